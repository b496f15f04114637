//! Log output: every line to standard error, access-log lines (`plexgate::access`, one per
//! routed request) batched. One `write(2)` per request cost about 3% of the gateway's CPU
//! under load (perf), so they collect in a buffer written out every [`FLUSH_INTERVAL`], when
//! it passes [`FLUSH_BYTES`], before any other line (so the order holds), and at exit. A
//! process killed with SIGKILL loses at most the last interval's access lines.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The tracing target of access-log lines.
const ACCESS_TARGET: &str = plexgate_gateway::access_log::TARGET;
/// Access lines wait at most this long.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A fuller buffer is written at once.
const FLUSH_BYTES: usize = 64 * 1024;

/// Access-log lines not yet written.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<u8>> {
    PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `buf` out (best effort: a log that cannot be written is not worth dying for).
fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

/// Takes one access-log line formatted by the gateway (`plexgate_gateway::access_log`),
/// batched like the ones that come through tracing.
pub fn access(line: &[u8]) {
    let mut buf = pending();
    buf.extend_from_slice(line);
    if buf.len() >= FLUSH_BYTES {
        write_out(&mut buf);
    }
}

/// Writes every pending access line now (at exit).
pub fn flush() {
    write_out(&mut pending());
}

/// The writer of the fmt subscriber; starts the flusher thread.
pub fn output() -> Output {
    let _ = std::thread::Builder::new().name("log-flush".to_owned()).spawn(|| {
        loop {
            std::thread::sleep(FLUSH_INTERVAL);
            flush();
        }
    });
    Output
}

/// Chooses per line: access lines to the buffer, the rest straight out.
pub struct Output;

/// One line's writer.
pub enum LineWriter {
    /// Into the buffer.
    Access,
    /// To standard error, after the buffered lines.
    Direct,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = pending();
        match self {
            LineWriter::Access => {
                drop(buf);
                access(data);
            }
            LineWriter::Direct => {
                write_out(&mut buf);
                std::io::stderr().lock().write_all(data)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter::Direct
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        if meta.target() == ACCESS_TARGET { LineWriter::Access } else { LineWriter::Direct }
    }
}
