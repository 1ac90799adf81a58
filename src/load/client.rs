//! Connections and single request/response exchanges: TCP (+ rustls with the ring
//! provider) and hyper's low-level HTTP/1.1 or HTTP/2 client. One connection per
//! worker, kept alive; errors are classified into [`ErrorKind`] by walking `source()`.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::LoadConfig;
use super::h1::{H1Conn, H1Error};
use super::record::ErrorKind;

/// The request every worker sends; cloned per request (hyper takes requests by value).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The whole HTTP/1.1 request, serialized once.
    raw: Bytes,
    head: bool,
    /// Safe to send again when a kept-alive connection turns out dead (RFC 9110 9.2.2).
    idempotent: bool,
    /// Closed loop: HTTP/1.1 sends are batched per runtime pass (see [`H1Conn::exchange`]).
    batch: bool,
}

impl Template {
    pub(crate) fn new(cfg: &LoadConfig) -> Self {
        let (uri, headers) = if cfg.http2 {
            // HTTP/2 carries the authority in the URI; a Host header would duplicate it.
            let mut h = cfg.headers.clone();
            h.remove(http::header::HOST);
            (cfg.h2_uri.clone(), h)
        } else {
            (cfg.target.origin.clone(), cfg.headers.clone())
        };
        Self {
            method: cfg.method.clone(),
            uri,
            raw: serialize(cfg),
            head: cfg.method == Method::HEAD,
            idempotent: matches!(
                cfg.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            ),
            headers,
            body: cfg.body.clone(),
            batch: matches!(cfg.rate, super::Rate::Max),
        }
    }

    /// A fresh request: reference-counted body and URI, one header-map copy.
    #[inline]
    fn build(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The HTTP/1.1 request bytes: request line, headers (Host included), a
/// Content-Length when there is a body (or the method expects one), the body.
fn serialize(cfg: &LoadConfig) -> Bytes {
    let mut r = Vec::with_capacity(256 + cfg.body.len());
    let target = cfg
        .target
        .origin
        .path_and_query()
        .map_or("/", |p| p.as_str());
    r.extend_from_slice(format!("{} {target} HTTP/1.1\r\n", cfg.method).as_bytes());
    for (k, v) in &cfg.headers {
        r.extend_from_slice(k.as_str().as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    let wants_body = matches!(cfg.method, Method::POST | Method::PUT | Method::PATCH);
    // `LoadConfig` refuses a user Content-Length or Transfer-Encoding: this is the
    // only framing on the wire.
    if wants_body || !cfg.body.is_empty() {
        r.extend_from_slice(format!("content-length: {}\r\n", cfg.body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(&cfg.body);
    Bytes::from(r)
}

/// Opens connections to the (pre-resolved) target.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: bool,
}

/// Why the TLS client could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure TLS for {host:?}: {reason}")]
pub struct TlsSetupError {
    host: String,
    reason: String,
}

impl Connector {
    pub(crate) fn new(cfg: &LoadConfig, addr: SocketAddr) -> Result<Self, TlsSetupError> {
        let tls = if cfg.target.https {
            let err = |reason: String| TlsSetupError {
                host: cfg.target.host.clone(),
                reason,
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| err(e.to_string()))?;
            let mut config = if cfg.insecure {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                    .with_no_client_auth()
            } else {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                builder.with_root_certificates(roots).with_no_client_auth()
            };
            config.alpn_protocols = if cfg.http2 {
                vec![b"h2".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            let name =
                ServerName::try_from(cfg.target.host.clone()).map_err(|e| err(e.to_string()))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            addr,
            tls,
            http2: cfg.http2,
        })
    }

    /// Opens a connection. Plain HTTP/1.1 needs nothing but the TCP connect; TLS and
    /// HTTP/2 handshakes run in a boxed future: they make it several KiB, which would
    /// otherwise sit in every connection's task for its whole life — and thousands of
    /// connections connect at once (one allocation per such connect, none per request).
    async fn connect(&self) -> Result<Conn, ErrorKind> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Connect,
            })?;
        let _ = tcp.set_nodelay(true);
        if self.tls.is_none() && !self.http2 {
            return Ok(Conn::H1(H1Conn::new(Box::new(tcp))));
        }
        Box::pin(self.upgrade(tcp)).await
    }

    /// TLS and/or HTTP/2 on a new TCP connection.
    async fn upgrade(&self, tcp: TcpStream) -> Result<Conn, ErrorKind> {
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls =
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => {
                                ErrorKind::Reset
                            }
                            _ => ErrorKind::Tls,
                        })?;
                if self.http2 {
                    self.handshake(TokioIo::new(tls)).await
                } else {
                    Ok(Conn::H1(H1Conn::new(Box::new(tls))))
                }
            }
        }
    }

    /// The HTTP/2 handshake; hyper drives the connection in its own task.
    async fn handshake<I>(&self, io: I) -> Result<Conn, ErrorKind>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H2(send))
    }
}

/// A live connection.
pub(crate) enum Conn {
    /// HTTP/1.1 keep-alive, our own minimal client (see `h1`).
    H1(H1Conn),
    /// HTTP/2 through hyper.
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// When the last HTTP/1.1 request was written (`None` for HTTP/2).
    pub(crate) fn sent_at(&self) -> Option<std::time::Instant> {
        match self {
            Conn::H1(h) => h.sent_at(),
            Conn::H2(_) => None,
        }
    }
}

/// One request/response exchange on `conn` (connecting first if needed), the whole
/// body read and dropped. Returns the status and body size. On error the connection
/// is dropped so that the next request reconnects. Each re-send of the request on a
/// new connection (see below) adds one to `resent`.
pub(crate) async fn exchange(
    conn: &mut Option<Conn>,
    connector: &Connector,
    template: &Template,
    resent: &mut u64,
) -> Result<(u16, u64), ErrorKind> {
    for attempt in 0..2 {
        if matches!(conn, Some(Conn::H1(h)) if !h.reusable()) {
            *conn = None;
        }
        let c = match conn {
            Some(c) => c,
            None => conn.insert(connector.connect().await?),
        };
        let r = match c {
            Conn::H1(h) => match h
                .exchange(&template.raw, template.head, template.batch)
                .await
            {
                Ok(x) => Ok(x),
                // A kept-alive connection the server closed between requests: an
                // idempotent request is sent once more on a new connection (counted);
                // any other may have reached the server, so it fails as a reset.
                Err(H1Error::Stale) if attempt == 0 && template.idempotent => {
                    *conn = None;
                    *resent += 1;
                    continue;
                }
                Err(H1Error::Stale) => Err(ErrorKind::Reset),
                Err(H1Error::Failed(k)) => Err(k),
            },
            Conn::H2(send) => h2_exchange(send, template).await,
        };
        if r.is_err() {
            *conn = None;
        }
        return r;
    }
    Err(ErrorKind::Reset)
}

async fn h2_exchange(
    send: &mut http2::SendRequest<Full<Bytes>>,
    template: &Template,
) -> Result<(u16, u64), ErrorKind> {
    send.ready().await.map_err(|e| classify(&e))?;
    let resp = send
        .send_request(template.build())
        .await
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let f = frame.map_err(|e| classify(&e))?;
        if let Some(d) = f.data_ref() {
            bytes += d.len() as u64;
        }
    }
    Ok((status, bytes))
}

/// Classifies a hyper error by its kind and the I/O errors in its `source()` chain.
pub(crate) fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        return ErrorKind::Protocol;
    }
    let mut src: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            };
        }
        src = s.source();
    }
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ErrorKind::Reset
    } else if e.is_user() {
        ErrorKind::Other
    } else {
        ErrorKind::Protocol
    }
}

/// `--insecure` (and a chaostoolkit http provider's `verify_tls: false`): accepts any
/// certificate, still checks handshake signatures.
#[derive(Debug)]
pub(crate) struct AcceptAnyCert(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
