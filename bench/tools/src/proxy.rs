//! The thread-per-core bound of the gateway scenario (issue 14): a bare HTTPS reverse proxy on
//! the gateway's crates (hyper 1 + tokio-rustls), shaped so no request crosses threads. One
//! current_thread runtime per core, each with its own SO_REUSEPORT listener on the same port
//! (the kernel spreads connections), and each client connection forwarded over its own
//! upstream HTTP/1.1 connection (`hyper::client::conn::http1`) driven on the same thread. No
//! routing table, authentication, limits, logs or metrics: what is left is TLS, HTTP/1.1 both
//! ways and the runtime's shape.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

pub fn main(args: &[String]) -> Result<(), String> {
    let (_, opts) = crate::parse_args(args)?;
    let need = |n: &str| crate::opt(&opts, n).map(str::to_owned).ok_or_else(|| format!("--{n} is required"));
    let port: u16 = need("port")?.parse().map_err(|_| "--port: not a port".to_owned())?;
    let upstream = need("upstream")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = crate::opt_parse(&opts, "threads", cores)?.max(1);
    let acceptor = TlsAcceptor::from(Arc::new(crate::tls::server(&need("cert")?, &need("key")?)?));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || serve(port, acceptor, upstream))
                .map_err(|e| format!("thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    eprintln!("proxy listening on 127.0.0.1:{port} ({threads} threads) -> {upstream}");
    for w in workers {
        w.join().map_err(|_| "a proxy thread panicked".to_owned())??;
    }
    Ok(())
}

/// One core's accept loop and connections.
fn serve(port: u16, acceptor: TlsAcceptor, upstream: String) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = (|| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind((std::net::Ipv4Addr::LOCALHOST, port).into())?;
            socket.listen(4096)
        })()
        .map_err(|e| format!("bind: {e}"))?;
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::task::spawn_local(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                // This client's upstream connection, made at its first request.
                let conn: Rc<RefCell<Option<SendRequest<Incoming>>>> = Rc::new(RefCell::new(None));
                let svc = hyper::service::service_fn(move |req| forward(req, conn.clone(), upstream.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    })
}

async fn forward(
    mut req: Request<Incoming>,
    conn: Rc<RefCell<Option<SendRequest<Incoming>>>>,
    upstream: String,
) -> Result<Response<Incoming>, String> {
    let taken = conn.borrow_mut().take();
    let mut sender = match taken {
        Some(s) if !s.is_closed() => s,
        _ => {
            let tcp = tokio::net::TcpStream::connect(&upstream).await.map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
            tokio::task::spawn_local(connection);
            sender
        }
    };
    // Waits until the previous answer's body is through.
    sender.ready().await.map_err(|e| e.to_string())?;
    let pq = req.uri().path_and_query().cloned();
    *req.uri_mut() = pq.map_or_else(|| hyper::Uri::from_static("/"), hyper::Uri::from);
    let answer = sender.send_request(req);
    *conn.borrow_mut() = Some(sender);
    answer.await.map_err(|e| e.to_string())
}
