//! Latency in user space (this kernel has no netem): a link made of two TAP devices, one in
//! each namespace, and a thread that copies every Ethernet frame from one to the other after a
//! fixed delay.
//!
//! The thread holds at most [`MAX_QUEUED_BYTES`] per direction (frames beyond it are dropped,
//! like a router's full queue); it stops, and both devices vanish, when the [`DelayLink`] is
//! dropped.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ns::Namespace;
use crate::Error;

/// Bytes queued per direction at most: 4 MiB holds 1 Gbit/s for 32 ms.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// Largest frame read: the MTU (1500) plus the Ethernet header, with room to spare.
const FRAME: usize = 2048;

/// How often the thread looks at its stop flag when idle.
const IDLE_POLL_MS: i32 = 50;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A running delay link; dropping it stops the thread and removes both devices.
pub(crate) struct DelayLink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLink {
    /// Makes TAP device `a_dev` in `a` and `b_dev` in `b` (both down) and starts moving frames
    /// between them, each `delay` late.
    pub(crate) fn start(
        a: Arc<Namespace>,
        a_dev: &str,
        b: Arc<Namespace>,
        b_dev: &str,
        delay: Duration,
    ) -> Result<DelayLink, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (a_dev, b_dev) = (a_dev.to_owned(), b_dev.to_owned());
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("delay-{}", a.name()))
            .spawn(move || {
                let open = |ns: &Namespace, dev: &str| {
                    ns.enter()
                        .and_then(|()| open_tap(dev))
                        .map_err(|source| Error::Io {
                            what: format!("TAP device {dev} in {}", ns.name()),
                            source,
                        })
                };
                let fds = open(&a, &a_dev).and_then(|fa| Ok((fa, open(&b, &b_dev)?)));
                match fds {
                    Ok((fa, fb)) => {
                        let _ = ready_tx.send(Ok(()));
                        forward([fa, fb], delay, &flag);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| Error::Io {
                what: "start a delay thread".into(),
                source,
            })?;
        let link = DelayLink {
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(link),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Io {
                what: "delay thread".into(),
                source: std::io::Error::other("ended before opening its devices"),
            }),
        }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens (creating) the non-blocking TAP device `name` in the calling thread's namespace.
fn open_tap(name: &str) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other("interface name too long"));
    }
    // SAFETY: plain system calls; the path is a NUL-terminated literal and `req` outlives the
    // ioctl that reads it.
    unsafe {
        let fd = libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        for (slot, byte) in req.name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// Frames read from one device, waiting to be written to the other.
#[derive(Default)]
struct Queue {
    frames: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
}

/// The thread's loop: frames read from `fds[i]` are written to `fds[1 - i]` `delay` later.
fn forward(fds: [OwnedFd; 2], delay: Duration, stop: &AtomicBool) {
    let mut queues = [Queue::default(), Queue::default()];
    let mut buf = vec![0u8; FRAME];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (from, queue) in queues.iter_mut().enumerate() {
            while queue.frames.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, frame)) = queue.frames.pop_front() {
                    queue.bytes -= frame.len();
                    // A failed write is a lost frame, as on a wire.
                    // SAFETY: writes from a live buffer to a descriptor we own.
                    let _ = unsafe {
                        libc::write(
                            fds[1 - from].as_raw_fd(),
                            frame.as_ptr().cast(),
                            frame.len(),
                        )
                    };
                }
            }
        }
        let next_due = queues
            .iter()
            .filter_map(|q| q.frames.front().map(|(due, _)| *due))
            .min();
        let timeout = next_due.map_or(IDLE_POLL_MS, |due| {
            // Rounded up, so the thread never wakes before a frame is due and spins.
            let micros = due.saturating_duration_since(now).as_micros();
            micros.div_ceil(1000).min(IDLE_POLL_MS as u128) as i32
        });
        let mut polls = [
            libc::pollfd {
                fd: fds[0].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fds[1].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `polls` is a live array of two pollfd structs.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), 2, timeout) };
        if ready <= 0 {
            continue;
        }
        let due = Instant::now() + delay;
        for (from, poll) in polls.iter().enumerate() {
            if poll.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return;
            }
            if poll.revents & libc::POLLIN == 0 {
                continue;
            }
            let queue = &mut queues[from];
            loop {
                // SAFETY: reads into a live buffer of `buf.len()` bytes.
                let len = unsafe {
                    libc::read(fds[from].as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if len <= 0 {
                    break;
                }
                let len = len as usize;
                if queue.bytes + len <= MAX_QUEUED_BYTES {
                    queue.bytes += len;
                    queue.frames.push_back((due, buf[..len].to_vec()));
                }
            }
        }
    }
}
