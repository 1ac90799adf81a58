//! Local HTTP servers for load tests, on 127.0.0.1 port 0, each on its own thread and
//! Tokio runtime so that both in-process tests and spawned binaries can use them.
//! Dropping a [`Server`] stops it. Also compiled into `examples/stall_server.rs`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The 12-byte body every answering server sends.
pub const BODY: &[u8] = b"hello world\n";

/// What a server does with each request.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with [`BODY`].
    Ok,
    /// Statuses in this cycle, by arrival order over all connections.
    Pattern(Vec<u16>),
    /// Freezes every answer during `[offset, offset + stall)` of each `period`, counted
    /// from the first request: a request arriving in a freeze is answered at its end.
    Stall {
        period: Duration,
        stall: Duration,
        offset: Duration,
    },
    /// 200 with `Connection: close`: the server closes every connection after one answer.
    ConnectionClose,
    /// Answers 200 after this delay.
    Delay(Duration),
    /// Answers one request per connection (keep-alive not refused in the answer), then
    /// closes it: the client finds its kept-alive connection dead on the next request.
    OneShot,
    /// Accepts connections, reads, never answers.
    Silent,
    /// Accepts connections and closes them at once.
    Close,
}

/// A running server; dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    /// Requests received (HTTP behaviours) or connections accepted (Silent, Close).
    pub hits: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Starts a server with `behavior` on 127.0.0.1:0.
pub fn spawn(behavior: Behavior) -> Server {
    spawn_on("127.0.0.1:0", behavior)
}

/// Starts a server with `behavior` on `addr` (loopback only).
pub fn spawn_on(addr: &str, behavior: Behavior) -> Server {
    start(addr, behavior, None)
}

/// Starts an https server (a fresh self-signed certificate for `localhost` and
/// 127.0.0.1, X.509 v3) with `behavior` on 127.0.0.1:0.
pub fn spawn_tls(behavior: Behavior) -> Server {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .expect("private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server certificate");
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    start("127.0.0.1:0", behavior, Some(acceptor))
}

fn start(addr: &str, behavior: Behavior, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let std_listener = std::net::TcpListener::bind(addr).expect("bind test server");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("local addr");
    let hits = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = oneshot::channel();
    let h = hits.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(serve(std_listener, behavior, h, stop_rx, tls));
        rt.shutdown_background();
    });
    Server {
        addr,
        hits,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

struct State {
    behavior: Behavior,
    hits: Arc<AtomicU64>,
    epoch: OnceLock<Instant>,
}

async fn serve(
    listener: std::net::TcpListener,
    behavior: Behavior,
    hits: Arc<AtomicU64>,
    mut stop: oneshot::Receiver<()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let state = Arc::new(State {
        behavior,
        hits,
        epoch: OnceLock::new(),
    });
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        match state.behavior {
            Behavior::Close => {
                state.hits.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
            Behavior::OneShot => {
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let mut len = 0;
                    while len < buf.len() {
                        match stream.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => len += n,
                        }
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                            state.hits.fetch_add(1, Ordering::SeqCst);
                            let _ = stream
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello world\n",
                                )
                                .await;
                            break;
                        }
                    }
                });
            }
            Behavior::Silent => {
                state.hits.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // Reads until the client goes away; bounded by the client's timeout.
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
            _ => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(state.clone(), req));
                    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        }
    }
}

async fn answer(
    state: Arc<State>,
    _req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = state.hits.fetch_add(1, Ordering::SeqCst);
    let mut status = 200;
    match &state.behavior {
        Behavior::Pattern(p) if !p.is_empty() => status = p[(n as usize) % p.len()],
        Behavior::Stall {
            period,
            stall,
            offset,
        } => {
            let epoch = *state.epoch.get_or_init(Instant::now);
            let since = epoch.elapsed();
            let period_ns = period.as_nanos().max(1);
            let phase = Duration::from_nanos((since.as_nanos() % period_ns) as u64);
            if phase >= *offset && phase < *offset + *stall {
                tokio::time::sleep(*offset + *stall - phase).await;
            }
        }
        Behavior::Delay(d) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if matches!(state.behavior, Behavior::ConnectionClose) {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}
