//! chaostoolkit's http provider (`chaoslib/provider/http.py`): one real request, made
//! the way python-requests makes it, answered as `{status, headers, body}`.
//!
//! # What it owns, and what it must not do
//! It opens one connection per request (HTTP/1.1, `Connection: close`), follows
//! redirects, and returns the answer; it never prints, retries, or judges the status
//! (a 500 is an answer, not an error). Substitution of `url`, `headers` and
//! `arguments` is done by the caller before [`call`].
//!
//! # As requests does
//! - `arguments`: query parameters for GET; for other methods a JSON body when the
//!   header named exactly `Content-Type` (a case-sensitive key, as chaoslib's dict
//!   lookup is) is exactly `application/json`, else a form body. JSON is written as
//!   Python's `json.dumps` writes it (`", "`, `": "`, non-ASCII as `\uXXXX`); form
//!   and query values as `urlencode(doseq=True)` (lists repeat the key, `None` is
//!   dropped, `True`, `1.0`); a string argument is sent as it is.
//! - A `Host` header is sent instead of the URL's authority; the connection still goes
//!   to the URL's host and port (and TLS names the URL's host).
//! - `connect_timeout` bounds name resolution, each TCP connect and the TLS handshake;
//!   `read_timeout` bounds each wait for data, not the whole answer. Pass
//!   [`Duration::MAX`] for requests' "no timeout".
//! - Redirects (301, 302, 303, 307, 308 with a `Location`) are followed up to
//!   [`MAX_REDIRECTS`]: 302 and 303 turn any method but HEAD into GET, 301 turns POST
//!   into GET; except after 307/308 the body and its `Content-Type` are dropped. When
//!   the redirect leaves the origin (requests' `should_strip_auth`: another host, or
//!   another port or scheme other than http→https on default ports), the caller's
//!   `Authorization` and `Host` headers are dropped.
//! - The answer's headers keep the name as first received; repeated headers are joined
//!   with `", "`; values are read as Latin-1, as Python's http.client does. The body is
//!   parsed JSON when `Content-Type` is exactly `application/json`, else text.
//!
//! # Known differences from chaostoolkit
//! - A body labelled `application/json` that does not parse is returned as text;
//!   requests raises and the activity fails.
//! - Text is decoded as UTF-8 (invalid bytes replaced); requests uses the charset of
//!   `Content-Type`, Latin-1 for `text/*` without one, or a guess.
//! - No `Accept-Encoding` is sent, so nothing is decompressed; no cookies are kept
//!   across redirects; `User-Agent` is `meshdrill/<version>`; no proxy variables.
//! - A PUT/PATCH/DELETE redirected by 301 is sent again with `Content-Length: 0`.
//! - An answer body is limited to [`MAX_BODY`] bytes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::substitute::{py_float, py_str};
use crate::load::AcceptAnyCert;

/// Redirects followed before [`HttpError::TooManyRedirects`] (requests' default).
pub const MAX_REDIRECTS: usize = 30;
/// Largest answer body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// One http provider call, substitution already done.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub url: String,
    /// Upper-cased before sending, as chaoslib does.
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub arguments: Option<Value>,
    pub connect_timeout: Duration,
    /// Applies to each wait for data, not to the whole answer.
    pub read_timeout: Duration,
    pub verify_tls: bool,
}

/// Why an http call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL (or a redirect's `Location`) is not an http(s) URL with a host.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A header, the method or the arguments cannot be sent.
    #[error("cannot build the request: {reason}")]
    BadRequest { reason: String },
    /// The host name did not resolve.
    #[error("cannot resolve {host_port}: {source}")]
    Resolve {
        host_port: String,
        #[source]
        source: io::Error,
    },
    /// TCP connect refused or failed.
    #[error("cannot connect to {host_port}: {source}")]
    Connect {
        host_port: String,
        #[source]
        source: io::Error,
    },
    /// Resolving, connecting or the TLS handshake took longer than the connect timeout.
    #[error("connecting to {host_port} took longer than the connect timeout of {secs}s")]
    ConnectTimeout { host_port: String, secs: f64 },
    /// The TLS handshake failed, usually the certificate check.
    #[error(
        "TLS with {host_port} failed: {source} (meshdrill verifies certificates by default, \
         as chaostoolkit's requests does; `verify_tls: false` on the provider would skip the check)"
    )]
    Tls {
        host_port: String,
        #[source]
        source: io::Error,
    },
    /// Writing the request failed.
    #[error("sending the request to {host_port} failed: {source}")]
    Send {
        host_port: String,
        #[source]
        source: io::Error,
    },
    /// Reading the answer failed (e.g. the connection was reset).
    #[error("reading the answer from {host_port} failed: {source}")]
    Receive {
        host_port: String,
        #[source]
        source: io::Error,
    },
    /// No data came (or could be sent) for the read timeout.
    #[error(
        "{host_port} sent no data for {secs}s (the read timeout, which applies to each wait \
         for data, not to the whole answer)"
    )]
    ReadTimeout { host_port: String, secs: f64 },
    /// The answer is not valid HTTP/1.x, or too large.
    #[error("{host_port} sent an invalid answer: {reason}")]
    BadResponse { host_port: String, reason: String },
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("more than {MAX_REDIRECTS} redirects; the last one went to {url}")]
    TooManyRedirects { url: String },
}

/// Makes the request, following redirects; returns `{status, headers, body}`.
pub async fn call(req: &HttpRequest) -> Result<Value, HttpError> {
    let mut url = parse_url(&req.url)?;
    let mut method = req.method.to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(HttpError::BadRequest {
            reason: format!("method {:?} is not an HTTP method", req.method),
        });
    }
    let mut headers = req.headers.clone();
    for (name, value) in &headers {
        check_header(name, value)?;
    }
    let mut body = None;
    match (&req.arguments, method.as_str()) {
        (None, _) => {}
        (Some(args), "GET") => add_query(&mut url, args)?,
        (Some(args), _) => body = Some(encode_body(args, &headers)?),
    }
    let mut redirects = 0;
    loop {
        let answer = exchange(req, &url, &method, &headers, body.as_ref()).await?;
        let status = answer.head.status;
        let location = match status {
            301 | 302 | 303 | 307 | 308 => answer.location(),
            _ => None,
        };
        let Some(location) = location else {
            return Ok(answer.into_output());
        };
        let next = url.join(&location).map_err(|e| HttpError::BadUrl {
            url: location.clone(),
            reason: format!("the redirect from {url} cannot be followed: {e}"),
        })?;
        if !matches!(next.scheme(), "http" | "https") || next.host().is_none() {
            return Err(HttpError::BadUrl {
                url: next.to_string(),
                reason: format!("the redirect from {url} is not to an http(s) URL"),
            });
        }
        if redirects == MAX_REDIRECTS {
            return Err(HttpError::TooManyRedirects {
                url: next.to_string(),
            });
        }
        redirects += 1;
        // requests' rebuild_method, then the body purge of resolve_redirects.
        if (status == 303 || status == 302) && method != "HEAD" || status == 301 && method == "POST"
        {
            method = "GET".to_owned();
        }
        if status != 307 && status != 308 {
            body = None;
            headers.retain(|(n, _)| {
                !["content-length", "content-type", "transfer-encoding"]
                    .iter()
                    .any(|p| n.eq_ignore_ascii_case(p))
            });
        }
        if leaves_origin(&url, &next) {
            headers.retain(|(n, _)| {
                !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("host")
            });
        }
        url = next;
    }
}

fn parse_url(s: &str) -> Result<Url, HttpError> {
    let bad = |reason: String| HttpError::BadUrl {
        url: s.to_owned(),
        reason,
    };
    let url = Url::parse(s).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme is {:?}; write http:// or https://",
            url.scheme()
        )));
    }
    match url.host() {
        None => Err(bad("there is no host".to_owned())),
        Some(Host::Domain("")) => Err(bad("the host is empty".to_owned())),
        Some(_) => Ok(url),
    }
}

/// requests' `should_strip_auth`: does the redirect leave the origin?
fn leaves_origin(old: &Url, new: &Url) -> bool {
    if old.host_str() != new.host_str() {
        return true;
    }
    if old.scheme() == "http"
        && matches!(old.port(), None | Some(80))
        && new.scheme() == "https"
        && matches!(new.port(), None | Some(443))
    {
        return false;
    }
    let changed_scheme = old.scheme() != new.scheme();
    // `Url::port` is None for the scheme's default port.
    if !changed_scheme && old.port().is_none() && new.port().is_none() {
        return false;
    }
    old.port() != new.port() || changed_scheme
}

// === the request ===

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn check_header(name: &str, value: &str) -> Result<(), HttpError> {
    if name.is_empty() || !name.bytes().all(is_token) {
        return Err(HttpError::BadRequest {
            reason: format!("header name {name:?} is not a valid HTTP header name"),
        });
    }
    if value.contains(['\r', '\n', '\0']) || value.starts_with([' ', '\t']) {
        return Err(HttpError::BadRequest {
            reason: format!(
                "header {name} has value {value:?}: no line breaks and no leading whitespace"
            ),
        });
    }
    Ok(())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

struct Body {
    bytes: Vec<u8>,
    content_type: Option<&'static str>,
}

fn encode_body(args: &Value, headers: &[(String, String)]) -> Result<Body, HttpError> {
    // chaoslib: `headers.get("Content-Type") == "application/json"` on a plain dict.
    let json = headers
        .iter()
        .any(|(n, v)| n == "Content-Type" && v == "application/json");
    if json {
        let mut s = String::new();
        py_json(args, &mut s);
        return Ok(Body {
            bytes: s.into_bytes(),
            content_type: None,
        });
    }
    match args {
        Value::String(s) => Ok(Body {
            bytes: s.clone().into_bytes(),
            content_type: None,
        }),
        _ => Ok(Body {
            bytes: urlencode(&form_pairs(args)?).into_bytes(),
            content_type: Some("application/x-www-form-urlencoded"),
        }),
    }
}

fn add_query(url: &mut Url, args: &Value) -> Result<(), HttpError> {
    let params = match args {
        Value::String(s) => s.clone(),
        _ => urlencode(&form_pairs(args)?),
    };
    if params.is_empty() {
        return Ok(());
    }
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{params}"),
        _ => params,
    };
    url.set_query(Some(&query));
    Ok(())
}

/// requests' `_encode_params` pairs: a map, or a list of `[key, value]`; each value a
/// scalar or a list of them (a map gives its keys, as iterating a dict does); `None`
/// values dropped.
fn form_pairs(args: &Value) -> Result<Vec<(String, String)>, HttpError> {
    let entries: Vec<(String, &Value)> = match args {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([k, v]) => Ok((py_str(k), v)),
                _ => Err(HttpError::BadRequest {
                    reason: format!(
                        "arguments as a list must hold [key, value] pairs, not {item}; \
                         write a map instead"
                    ),
                }),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(HttpError::BadRequest {
                reason: format!("arguments must be a map, not {other}"),
            });
        }
    };
    let mut pairs = Vec::new();
    for (k, vs) in entries {
        let values: Vec<Value> = match vs {
            Value::Array(items) => items.clone(),
            Value::Object(m) => m.keys().map(|k| Value::String(k.clone())).collect(),
            v => vec![v.clone()],
        };
        for v in values.iter().filter(|v| !v.is_null()) {
            pairs.push((k.clone(), py_str(v)));
        }
    }
    Ok(pairs)
}

/// Python's `urlencode`, with `quote_plus` on keys and values.
fn urlencode(pairs: &[(String, String)]) -> String {
    fn quote_plus(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b' ' => out.push('+'),
                b if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) => out.push(char::from(b)),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        quote_plus(k, &mut out);
        out.push('=');
        quote_plus(v, &mut out);
    }
    out
}

/// Python's `json.dumps` with its defaults (`", "` and `": "`, `ensure_ascii`).
fn py_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&py_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => py_json_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json_str(k, out);
                out.push_str(": ");
                py_json(item, out);
            }
            out.push('}');
        }
    }
}

fn py_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The request head and body bytes.
fn serialize(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: Option<&Body>,
) -> Vec<u8> {
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let host = header(headers, "host").map_or(authority, str::to_owned);
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    let defaults = [
        (
            "User-Agent",
            concat!("meshdrill/", env!("CARGO_PKG_VERSION")),
        ),
        ("Accept", "*/*"),
        ("Connection", "close"),
    ];
    for (name, value) in defaults {
        if header(headers, name).is_none() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        if ["host", "content-length", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(ct) = body.and_then(|b| b.content_type)
        && header(headers, "content-type").is_none()
    {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    match body {
        Some(b) => head.push_str(&format!("Content-Length: {}\r\n", b.bytes.len())),
        None if method != "GET" && method != "HEAD" => head.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(&b.bytes);
    }
    bytes
}

// === the connection ===

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(req: &HttpRequest, url: &Url) -> Result<Conn, HttpError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let (host_port, addrs): (String, Vec<SocketAddr>) = match url.host() {
        Some(Host::Ipv4(a)) => (format!("{a}:{port}"), vec![SocketAddr::new(a.into(), port)]),
        Some(Host::Ipv6(a)) => (
            format!("[{a}]:{port}"),
            vec![SocketAddr::new(a.into(), port)],
        ),
        Some(Host::Domain(d)) => {
            let host_port = format!("{d}:{port}");
            let found = timeout(req.connect_timeout, tokio::net::lookup_host((d, port))).await;
            match found {
                Err(_) => return Err(connect_timeout(req, host_port)),
                Ok(Err(source)) => return Err(HttpError::Resolve { host_port, source }),
                Ok(Ok(addrs)) => (host_port, addrs.collect()),
            }
        }
        None => {
            return Err(HttpError::BadUrl {
                url: url.to_string(),
                reason: "there is no host".to_owned(),
            });
        }
    };
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match timeout(req.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => last = Some(connect_timeout(req, host_port.clone())),
            Ok(Err(source)) => {
                last = Some(HttpError::Connect {
                    host_port: host_port.clone(),
                    source,
                });
            }
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
        }
    }
    let Some(tcp) = tcp else {
        return Err(last.unwrap_or_else(|| HttpError::Resolve {
            host_port: host_port.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }));
    };
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if url.scheme() == "https" {
        let tls_err = |source| HttpError::Tls {
            host_port: host_port.clone(),
            source,
        };
        let (connector, name) = tls_connector(url, req.verify_tls).map_err(tls_err)?;
        match timeout(req.connect_timeout, connector.connect(name, tcp)).await {
            Err(_) => return Err(connect_timeout(req, host_port)),
            Ok(Err(source)) => return Err(tls_err(source)),
            Ok(Ok(s)) => Box::new(s),
        }
    } else {
        Box::new(tcp)
    };
    Ok(Conn {
        io,
        buf: Vec::new(),
        read_timeout: req.read_timeout,
        host_port,
    })
}

fn connect_timeout(req: &HttpRequest, host_port: String) -> HttpError {
    HttpError::ConnectTimeout {
        host_port,
        secs: req.connect_timeout.as_secs_f64(),
    }
}

fn tls_connector(url: &Url, verify: bool) -> io::Result<(TlsConnector, ServerName<'static>)> {
    let other = |e: String| io::Error::other(e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| other(e.to_string()))?;
    let mut config = if verify {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match url.host() {
        Some(Host::Ipv4(a)) => ServerName::from(std::net::IpAddr::from(a)),
        Some(Host::Ipv6(a)) => ServerName::from(std::net::IpAddr::from(a)),
        Some(Host::Domain(d)) => {
            ServerName::try_from(d.to_owned()).map_err(|e| other(e.to_string()))?
        }
        None => return Err(other("no host".to_owned())),
    };
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// One connection and its unread bytes.
struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    read_timeout: Duration,
    host_port: String,
}

/// An answer head: status and headers as received (names, raw values).
struct Head {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// A complete answer.
struct Answer {
    head: Head,
    body: Vec<u8>,
}

impl Answer {
    /// requests reads `Location` as Latin-1 and re-decodes it as UTF-8.
    fn location(&self) -> Option<String> {
        self.head
            .values("location")
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn into_output(self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.head.headers {
            let value: String = value.iter().map(|b| char::from(*b)).collect();
            let known = headers
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(name));
            match known {
                Some((_, Value::String(joined))) => {
                    joined.push_str(", ");
                    joined.push_str(&value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value));
                }
            }
        }
        let is_json = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .is_some_and(|(_, v)| v == "application/json");
        let text = || Value::String(String::from_utf8_lossy(&self.body).into_owned());
        let body = if is_json {
            serde_json::from_slice(&self.body).unwrap_or_else(|_| text())
        } else {
            text()
        };
        let mut out = Map::new();
        out.insert("status".to_owned(), Value::from(self.head.status));
        out.insert("headers".to_owned(), Value::Object(headers));
        out.insert("body".to_owned(), body);
        Value::Object(out)
    }
}

async fn exchange(
    req: &HttpRequest,
    url: &Url,
    method: &str,
    headers: &[(String, String)],
    body: Option<&Body>,
) -> Result<Answer, HttpError> {
    let mut conn = connect(req, url).await?;
    let bytes = serialize(method, url, headers, body);
    match timeout(conn.read_timeout, conn.io.write_all(&bytes)).await {
        Err(_) => return Err(conn.read_timeout_error()),
        Ok(Err(source)) => {
            return Err(HttpError::Send {
                host_port: conn.host_port,
                source,
            });
        }
        Ok(Ok(())) => {}
    }
    let _ = timeout(conn.read_timeout, conn.io.flush()).await;
    let head = loop {
        let head = conn.read_head().await?;
        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
        if !(100..200).contains(&head.status) || head.status == 101 {
            break head;
        }
    };
    let body = conn.read_body(&head, method == "HEAD").await?;
    Ok(Answer { head, body })
}

impl Conn {
    fn read_timeout_error(&self) -> HttpError {
        HttpError::ReadTimeout {
            host_port: self.host_port.clone(),
            secs: self.read_timeout.as_secs_f64(),
        }
    }

    fn bad(&self, reason: impl Into<String>) -> HttpError {
        HttpError::BadResponse {
            host_port: self.host_port.clone(),
            reason: reason.into(),
        }
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        self.buf.reserve(16 * 1024);
        match timeout(self.read_timeout, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Err(self.read_timeout_error()),
            Ok(Ok(n)) => Ok(n > 0),
            // A TLS peer closing without close_notify: an end, as Python's ssl treats it.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Ok(Err(source)) => Err(HttpError::Receive {
                host_port: self.host_port.clone(),
                source,
            }),
        }
    }

    async fn read_head(&mut self) -> Result<Head, HttpError> {
        loop {
            let parsed = {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut slots);
                match resp.parse(&self.buf) {
                    Ok(httparse::Status::Complete(n)) => Some(Ok((
                        n,
                        Head {
                            status: resp.code.unwrap_or(0),
                            headers: resp
                                .headers
                                .iter()
                                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                                .collect(),
                        },
                    ))),
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => Some(Err(e)),
                }
            };
            match parsed {
                Some(Ok((n, head))) => {
                    self.buf.drain(..n);
                    return Ok(head);
                }
                Some(Err(e)) => return Err(self.bad(format!("bad response head: {e}"))),
                None if self.buf.len() > MAX_HEAD => {
                    return Err(self.bad("response head larger than 64 KiB"));
                }
                None => {
                    if !self.fill().await? {
                        return Err(self.bad(if self.buf.is_empty() {
                            "the connection closed without an answer"
                        } else {
                            "the connection closed inside the response head"
                        }));
                    }
                }
            }
        }
    }

    async fn read_body(&mut self, head: &Head, head_request: bool) -> Result<Vec<u8>, HttpError> {
        if head_request || matches!(head.status, 100..=199 | 204 | 304) {
            return Ok(Vec::new());
        }
        if let Some(te) = head.values("transfer-encoding").last() {
            let chunked = String::from_utf8_lossy(te)
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            return if chunked {
                self.read_chunked().await
            } else {
                self.read_to_end().await
            };
        }
        let mut lengths = head.values("content-length").map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
        });
        match lengths.next() {
            None => self.read_to_end().await,
            Some(Some(n)) if lengths.all(|m| m == Some(n)) => {
                if n > MAX_BODY {
                    return Err(self.bad(format!("body of {n} bytes, more than {MAX_BODY}")));
                }
                self.need(n).await?;
                Ok(self.buf.drain(..n).collect())
            }
            Some(_) => Err(self.bad("invalid Content-Length")),
        }
    }

    /// Waits until `n` bytes are buffered.
    async fn need(&mut self, n: usize) -> Result<(), HttpError> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(self.bad(format!(
                    "the connection closed after {} of {n} body bytes",
                    self.buf.len()
                )));
            }
        }
        Ok(())
    }

    async fn read_to_end(&mut self) -> Result<Vec<u8>, HttpError> {
        while self.fill().await? {
            if self.buf.len() > MAX_BODY {
                return Err(self.bad(format!("body larger than {MAX_BODY} bytes")));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// One line without its line end; `None` at the end of the stream.
    async fn line(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(self.bad("chunk line too long"));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let Some(line) = self.line().await? else {
                return Err(self.bad("the connection closed inside a chunked body"));
            };
            let size = String::from_utf8_lossy(&line);
            let size = size.split(';').next().unwrap_or_default().trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                return Err(self.bad(format!("bad chunk size {size:?}")));
            };
            if size == 0 {
                // Trailers, up to an empty line (or the end).
                while let Some(line) = self.line().await? {
                    if line.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            if body.len().saturating_add(size) > MAX_BODY {
                return Err(self.bad(format!("body larger than {MAX_BODY} bytes")));
            }
            self.need(size + 2).await?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(self.bad("a chunk does not end with CRLF"));
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

#[cfg(test)]
mod tests;
