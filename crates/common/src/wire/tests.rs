use proptest::prelude::*;

use super::*;

fn entry(name: &str) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(name.as_bytes())),
        size: 42,
        name: name.into(),
    }
}

async fn round_trip<T: Serialize + DeserializeOwned>(msg: &T) -> T {
    let frame = encode_frame(msg).unwrap();
    read_frame(&mut &frame[..]).await.unwrap()
}

#[tokio::test]
async fn messages_round_trip() {
    let requests = vec![
        Request::Register {
            entries: vec![entry("a.txt"), entry("b c.mp3")],
        },
        Request::Unregister {
            ids: vec![entry("x").id],
        },
        Request::Search {
            words: vec!["hello".into(), "world".into()],
            max_results: 10,
        },
        Request::Lookup { id: entry("y").id },
        Request::GetManifest { id: entry("z").id },
        Request::GetPiece {
            id: entry("z").id,
            index: 7,
        },
        Request::ReportUnreachable {
            nodes: vec![NodeId([3; 32]); MAX_REPORTED],
        },
        Request::Connect {
            target: NodeId([4; 32]),
        },
        Request::Relay {
            target: NodeId([4; 32]),
            requester: NodeId([5; 32]),
        },
        Request::RelayAccept { circuit: u64::MAX },
        Request::Browse { start: 1000 },
        Request::DialBack {
            leaf: NodeId([6; 32]),
            addr: "[::1]:4710".parse().unwrap(),
        },
    ];
    assert_eq!(requests.len() as u64, REQUEST_KINDS);
    for request in requests {
        assert_eq!(round_trip(&request).await, request);
        let frame = encode_frame(&request).unwrap();
        assert_eq!(read_request(&mut &frame[..]).await.unwrap(), request);
    }
    let hello = Handshake::Hello(Hello {
        version: PROTOCOL_VERSION,
        node_id: NodeId([9; 32]),
        role: Role::Supernode,
        listen_port: 4711,
        capacity: 1000,
        intent: Intent::Join,
        network_proof: Some([7; 32]),
    });
    assert_eq!(round_trip(&hello).await, hello);
    let response = Response::Hits(vec![Hit {
        id: entry("a").id,
        size: 1,
        name: "a".into(),
        sources: 2,
        providers: vec![Provider::new(
            NodeId([1; 32]),
            "127.0.0.1:9".parse().unwrap(),
        )],
    }]);
    assert_eq!(round_trip(&response).await, response);
}

#[test]
fn report_unreachable_bytes() {
    // Kind 6 (appended after GetPiece), a count, then each 32-byte node id.
    let frame = encode_frame(&Request::ReportUnreachable {
        nodes: vec![NodeId([0xab; 32])],
    })
    .unwrap();
    let mut golden = vec![0, 0, 0, 34, 6, 1];
    golden.extend_from_slice(&[0xab; 32]);
    assert_eq!(frame, golden);
}

#[tokio::test]
async fn oversized_length_is_refused_before_reading() {
    let mut frame = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0; 16]);
    let err = read_request(&mut &frame[..]).await.unwrap_err();
    assert!(matches!(err, FrameError::Oversized { .. }), "{err}");
    assert!(err.is_violation());
}

#[tokio::test]
async fn unknown_and_malformed_are_told_apart() {
    let frame = [0, 0, 0, 2, 42, 1];
    let err = read_request(&mut &frame[..]).await.unwrap_err();
    assert!(matches!(err, FrameError::UnknownMessage(42)), "{err}");
    let frame = [0, 0, 0, 3, 5, 0xff, 0xff];
    let err = read_request(&mut &frame[..]).await.unwrap_err();
    assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    assert!(matches!(
        read_request(&mut &[][..]).await,
        Err(FrameError::Finished)
    ));
    assert!(matches!(
        read_request(&mut &[0, 0][..]).await,
        Err(FrameError::Io(_))
    ));
}

#[test]
fn a_full_batch_fits_a_frame() {
    let name = "n".repeat(MAX_NAME_LEN);
    let entries = (0..MAX_BATCH).map(|_| entry(&name)).collect();
    assert!(encode_frame(&Request::Register { entries }).is_ok());
    let entries = (0..BROWSE_PAGE).map(|_| entry(&name)).collect();
    let total = u32::MAX;
    assert!(encode_frame(&Response::Files { entries, total }).is_ok());
    let cvs = vec![[0xffu8; 32]; crate::hash::MAX_PIECES as usize];
    let manifest = Manifest {
        size: u64::MAX,
        piece_size: u64::MAX,
        cvs,
    };
    assert!(encode_frame(&Response::Manifest(manifest)).is_ok());
}

proptest! {
    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = postcard::from_bytes::<Response>(&bytes);
        let _ = postcard::from_bytes::<Handshake>(&bytes);
    }
}
