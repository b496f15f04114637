//! A TCP forwarder that can be frozen: while frozen it keeps every connection open but moves
//! no byte either way, as a hung host or a stalled link does (no reset, no refusal). Tests
//! put it between a process and its back end (a caching service and its Redis) to cut that
//! one process off without touching the others.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// The forwarder; it runs until the test process ends.
pub struct Freezer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    frozen: Arc<(Mutex<bool>, Condvar)>,
}

impl Freezer {
    /// Forwards 127.0.0.1:<free port> to 127.0.0.1:`target`.
    pub fn start(target: u16) -> Freezer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the freezer");
        let port = listener.local_addr().expect("freezer address").port();
        let frozen = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = frozen.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to, gate) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"), gate.clone());
                    thread::spawn(move || pump(from, to, &gate));
                }
            }
        });
        Freezer { port, frozen }
    }

    /// Stops moving bytes (connections stay open).
    pub fn freeze(&self) {
        *self.frozen.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    /// Moves bytes again.
    pub fn thaw(&self) {
        *self.frozen.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.frozen.1.notify_all();
    }
}

/// Copies `from` to `to`, holding each chunk while the gate is frozen.
fn pump(mut from: TcpStream, mut to: TcpStream, gate: &(Mutex<bool>, Condvar)) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut frozen = gate.0.lock().unwrap_or_else(|p| p.into_inner());
            while *frozen {
                frozen = gate.1.wait(frozen).unwrap_or_else(|p| p.into_inner());
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
