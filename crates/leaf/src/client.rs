//! Requests over an established connection: one bidirectional stream per request.

use kazoo_common::wire::{self, FrameError, Request, Response};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

/// Errors making a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Sending failed.
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    /// Sending failed (stream closed).
    #[error("sending: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// Receiving failed.
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    /// The peer ended the stream early.
    #[error("stream ended early")]
    Eof,
    /// The peer took too long.
    #[error("timed out")]
    Timeout,
    /// A frame could not be read or decoded.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The peer answered with an error.
    #[error("peer error {code:?}: {message}")]
    Remote {
        /// The code.
        code: wire::ErrorCode,
        /// The detail.
        message: String,
    },
    /// The peer answered with an unexpected message.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Sends `request` on a new stream and returns the stream to read the answer from.
pub async fn send(conn: &Connection, request: &Request) -> Result<RecvStream, RequestError> {
    let (mut send, recv) = conn.open_bi().await?;
    wire::write_frame(&mut send, request).await?;
    send.finish()?;
    Ok(recv)
}

pub use kazoo_common::wire::ANSWER_TIMEOUT;

/// Reads one answer frame (within [`ANSWER_TIMEOUT`]), turning [`Response::Error`] into
/// [`RequestError::Remote`].
pub async fn read_answer(recv: &mut RecvStream) -> Result<Response, RequestError> {
    let frame = tokio::time::timeout(ANSWER_TIMEOUT, wire::read_frame::<Response>(recv))
        .await
        .map_err(|_| RequestError::Timeout)??;
    match frame {
        Response::Error { code, message } => Err(RequestError::Remote { code, message }),
        other => Ok(other),
    }
}

/// Sends `request` and reads a single answer.
pub async fn call(conn: &Connection, request: &Request) -> Result<Response, RequestError> {
    let mut recv = send(conn, request).await?;
    read_answer(&mut recv).await
}

/// Opens a relay leg on `conn`: sends `request` (a `Relay` or `RelayAccept`) on a new stream
/// that stays open both ways and waits up to `wait` for [`Response::Relaying`], after which
/// the stream carries relay frames (see the wire spec, "Relay"). A refusal is
/// [`RequestError::Remote`].
pub async fn relay_stream(
    conn: &Connection,
    request: &Request,
    wait: Duration,
) -> Result<(SendStream, RecvStream), RequestError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    wire::write_frame(&mut send, request).await?;
    let answer = tokio::time::timeout(wait, wire::read_frame::<Response>(&mut recv))
        .await
        .map_err(|_| RequestError::Timeout)??;
    match answer {
        Response::Relaying => Ok((send, recv)),
        Response::Error { code, message } => Err(RequestError::Remote { code, message }),
        other => Err(RequestError::Unexpected(format!("{other:?}"))),
    }
}
