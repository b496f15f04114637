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
use std::io;

use rustix::net::Shutdown;
use tokio::net::TcpStream;

/// Bytes moved per read. A TLS record is at most 16 KiB plus overhead.
pub const BUFFER_BYTES: usize = 16 * 1024;
/// Free buffers kept per thread (more are freed): enough for the connections one thread
/// serves at the same instant, not for every connection it holds.
const KEEP_PER_THREAD: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUFFER_BYTES].into_boxed_slice())
}

fn give(buf: Box<[u8]>) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP_PER_THREAD {
            f.push(buf);
        }
    });
}

/// Writes all of `bytes` to `to`.
pub async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves bytes `from` -> `to` until `from` ends, then ends `to`'s writing side (the half-close
/// passes through, as with `copy_bidirectional`); `moved` is told each chunk's size once it
/// is written.
async fn one_way(from: &TcpStream, to: &TcpStream, moved: &(impl Fn(usize) + Sync)) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let mut buf = take();
        let n = match from.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give(buf);
                continue;
            }
            Err(e) => {
                give(buf);
                return Err(e);
            }
        };
        if n == 0 {
            give(buf);
            // The peer may be gone already; the other direction reports that.
            let _ = rustix::net::shutdown(to, Shutdown::Write);
            return Ok(total);
        }
        let written = write_all(to, &buf[..n]).await;
        give(buf);
        written?;
        total += n as u64;
        moved(n);
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
