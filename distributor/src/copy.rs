//! Copying both ways between the client and its target, holding a buffer only while bytes
//! are in flight.
//!
//! tokio's `copy_bidirectional` allocates its two buffers when the copy starts and keeps them
//! for the connection's life: 32 KiB per connection even when nothing moves, which made an
//! idle keep-alive client cost the distributor about 43 KB (HAProxy: about 3 KB, its buffers
//! come from a pool only while data waits). Here each direction waits for readiness with no
//! buffer, borrows one from a small per-thread free list to move what is there, and gives it
//! back before waiting again.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;

use rustix::net::Shutdown;
use tokio::net::TcpStream;

/// Bytes moved per read. A TLS record is at most 16 KiB plus overhead.
pub const BUFFER_BYTES: usize = 16 * 1024;
/// Free buffers kept per thread (more are freed): enough for the connections one thread
/// serves at the same instant, not for every connection it holds.
const KEEP_PER_THREAD: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of [`BUFFER_BYTES`] capacity. Never zeroed: reads fill its spare capacity
/// (a task may take on one thread and give back on another, so a thread's list can run dry).
pub(crate) fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(BUFFER_BYTES))
}

/// Gives a buffer from [`take`] back to this thread's free list.
pub(crate) fn give(mut buf: Vec<u8>) {
    buf.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP_PER_THREAD {
            f.push(buf);
        }
    });
}

/// Writes all of `bytes` to `to` (trying first: a socket is usually writable, and waiting for
/// readiness first costs a poll per chunk).
pub async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match to.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => poll_fn(|cx| to.poll_write_ready(cx)).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves bytes `from` -> `to` until `from` ends, then ends `to`'s writing side (the half-close
/// passes through, as with `copy_bidirectional`); `moved` is told each chunk's size once it
/// is written. A buffer is held from readiness until the socket has nothing more to read.
async fn one_way(from: &TcpStream, to: &TcpStream, moved: &(impl Fn(usize) + Sync)) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // The stream's own reader slot (`readable()` would queue a waiter under a lock).
        poll_fn(|cx| from.poll_read_ready(cx)).await?;
        let mut buf = take();
        let ended = loop {
            buf.clear();
            match from.try_read_buf(&mut buf) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    if let Err(e) = write_all(to, &buf[..n]).await {
                        break Err(e);
                    }
                    total += n as u64;
                    moved(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        give(buf);
        if ended? {
            // The peer may be gone already; the other direction reports that.
            let _ = rustix::net::shutdown(to, Shutdown::Write);
            return Ok(total);
        }
    }
}

/// Copies both ways until both directions have ended (or one fails); returns the bytes moved
/// client -> target and target -> client. `to_target` and `to_client` are told each chunk.
pub async fn both_ways(
    client: &TcpStream,
    target: &TcpStream,
    to_target: impl Fn(usize) + Sync,
    to_client: impl Fn(usize) + Sync,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(client, target, &to_target), one_way(target, client, &to_client))
}
