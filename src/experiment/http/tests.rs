//! Requests against small servers started here on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn request(url: String) -> HttpRequest {
    HttpRequest {
        url,
        method: "GET".to_owned(),
        headers: Vec::new(),
        arguments: None,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        verify_tls: true,
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(Full::new(body.into()))
        .expect("response")
}

/// The test routes. `/echo` answers what it received as JSON.
async fn route(req: Request<Incoming>, hits: Arc<AtomicUsize>) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/echo" => {
            let method = req.method().to_string();
            let target = req.uri().to_string();
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), Value::String(v))
                })
                .collect();
            let body = req.into_body().collect().await.expect("body").to_bytes();
            let echo = json!({
                "method": method,
                "target": target,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            reply(200, "application/json", echo.to_string())
        }
        "/text" => reply(200, "text/plain", "hello"),
        "/charset" => reply(200, "application/json; charset=utf-8", "{\"a\": 1}"),
        "/badjson" => reply(200, "application/json", "not json"),
        "/fail" => reply(500, "text/plain", "boom"),
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            reply(200, "text/plain", "late")
        }
        "/loop" => redirect(302, "/loop"),
        p => match p.strip_prefix("/redirect/") {
            Some(rest) => {
                let (code, to) = rest.split_once('/').unwrap_or((rest, ""));
                let to = to.replace("%3A", ":");
                let to = if to.starts_with("http") {
                    to
                } else {
                    format!("/{to}")
                };
                redirect(code.parse().unwrap_or(302), &to)
            }
            None => reply(404, "text/plain", "no such route"),
        },
    }
}

fn redirect(code: u16, to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("Location", to)
        .body(Full::new(Bytes::new()))
        .expect("redirect")
}

struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

/// Serves [`route`] on `bind` (port 0) until the test's runtime ends.
async fn serve_on(bind: &str) -> std::io::Result<Server> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let hits = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let hits = hits.clone();
                    async move { Ok::<_, Infallible>(route(req, hits).await) }
                });
                let _ = http1::Builder::new()
                    .title_case_headers(true)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(Server { addr, hits })
}

async fn serve() -> Server {
    serve_on("127.0.0.1:0").await.expect("bind loopback")
}

/// Answers one connection with `parts`, written one after another with `gap` between
/// them, after reading the request head.
async fn raw_server(parts: Vec<&'static [u8]>, gap: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tcp.write_all(part).await.is_err() {
                return;
            }
        }
    });
    addr
}

async fn echo(req: &HttpRequest) -> Value {
    let out = call(req).await.expect("call");
    assert_eq!(out["status"], 200, "{out}");
    out["body"].clone()
}

#[tokio::test]
async fn get_sends_arguments_as_query_parameters() {
    let s = serve().await;
    let mut req = request(format!("http://{}/echo?x=1", s.addr));
    req.arguments =
        Some(json!({"a": "b c/é", "n": 2, "f": 1.0, "t": true, "l": [1, "z"], "none": null}));
    let body = echo(&req).await;
    assert_eq!(body["method"], "GET");
    assert_eq!(
        body["target"],
        "/echo?x=1&a=b+c%2F%C3%A9&n=2&f=1.0&t=True&l=1&l=z"
    );
    assert_eq!(body["body"], "");
    assert!(body["headers"].get("content-length").is_none());
}

#[tokio::test]
async fn post_sends_json_when_content_type_is_exactly_application_json() {
    let s = serve().await;
    let mut req = request(format!("http://{}/echo", s.addr));
    req.method = "post".to_owned();
    req.headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    req.arguments = Some(json!({"a": 1, "b": [true, null, 2.5], "é": "ü\n"}));
    let body = echo(&req).await;
    assert_eq!(body["method"], "POST");
    // As Python's json.dumps writes it.
    assert_eq!(
        body["body"],
        r#"{"a": 1, "b": [true, null, 2.5], "\u00e9": "\u00fc\n"}"#
    );
    assert_eq!(body["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn post_sends_a_form_otherwise() {
    let s = serve().await;
    let mut req = request(format!("http://{}/echo", s.addr));
    req.method = "PUT".to_owned();
    // chaoslib looks the key up exactly: a lower-case key is not the JSON switch.
    req.headers = vec![("X-Trace".to_owned(), "1".to_owned())];
    req.arguments = Some(json!({"a": 1, "b": "x y&z"}));
    let body = echo(&req).await;
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["body"], "a=1&b=x+y%26z");
    assert_eq!(
        body["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(body["headers"]["x-trace"], "1");

    req.headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let body = echo(&req).await;
    assert_eq!(body["body"], "a=1&b=x+y%26z");
    assert_eq!(body["headers"]["content-type"], "application/json");

    // No arguments: an empty body, announced.
    req.arguments = None;
    let body = echo(&req).await;
    assert_eq!(body["headers"]["content-length"], "0");
}

#[tokio::test]
async fn host_header_overrides_the_host_sent() {
    let s = serve().await;
    let mut req = request(format!("http://{}/echo", s.addr));
    let body = echo(&req).await;
    assert_eq!(body["headers"]["host"], s.addr.to_string());
    req.headers = vec![("Host".to_owned(), "bookinfo.example".to_owned())];
    let body = echo(&req).await;
    assert_eq!(body["headers"]["host"], "bookinfo.example");
}

#[tokio::test]
async fn body_is_json_only_for_exactly_application_json() {
    let s = serve().await;
    let out = call(&request(format!("http://{}/echo", s.addr)))
        .await
        .expect("call");
    assert!(out["body"].is_object());
    assert_eq!(out["headers"]["Content-Type"], "application/json");
    let out = call(&request(format!("http://{}/text", s.addr)))
        .await
        .expect("call");
    assert_eq!(out["body"], "hello");
    let out = call(&request(format!("http://{}/charset", s.addr)))
        .await
        .expect("call");
    assert_eq!(out["body"], "{\"a\": 1}");
    // Labelled JSON but not JSON: text (requests would raise).
    let out = call(&request(format!("http://{}/badjson", s.addr)))
        .await
        .expect("call");
    assert_eq!(out["body"], "not json");
}

#[tokio::test]
async fn a_500_is_an_answer() {
    let s = serve().await;
    let out = call(&request(format!("http://{}/fail", s.addr)))
        .await
        .expect("call");
    assert_eq!(out["status"], 500);
    assert_eq!(out["body"], "boom");
}

#[tokio::test]
async fn redirect_302_turns_post_into_get_without_body() {
    let s = serve().await;
    let mut req = request(format!("http://{}/redirect/302/echo", s.addr));
    req.method = "POST".to_owned();
    req.headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    req.arguments = Some(json!({"a": 1}));
    let body = echo(&req).await;
    assert_eq!(body["method"], "GET");
    assert_eq!(body["body"], "");
    assert!(body["headers"].get("content-type").is_none());

    // 307 keeps the method, the body and its type.
    req.url = format!("http://{}/redirect/307/echo", s.addr);
    let body = echo(&req).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["body"], r#"{"a": 1}"#);
    assert_eq!(body["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn redirect_to_another_host_drops_host_and_authorization() {
    let s = serve().await;
    let port = s.addr.port();
    let mut req = request(format!("http://{}/redirect/302/echo", s.addr));
    req.headers = vec![
        ("Host".to_owned(), "bookinfo.example".to_owned()),
        ("Authorization".to_owned(), "Bearer t".to_owned()),
    ];
    // Same origin: both kept.
    let body = echo(&req).await;
    assert_eq!(body["headers"]["host"], "bookinfo.example");
    assert_eq!(body["headers"]["authorization"], "Bearer t");
    // 127.0.0.1 → localhost: another host.
    req.url = format!(
        "http://{}/redirect/302/http%3A//localhost%3A{port}/echo",
        s.addr
    );
    let body = echo(&req).await;
    assert_eq!(body["headers"]["host"], format!("localhost:{port}"));
    assert!(body["headers"].get("authorization").is_none());
}

#[tokio::test]
async fn redirects_stop_after_thirty() {
    let s = serve().await;
    let err = call(&request(format!("http://{}/loop", s.addr)))
        .await
        .expect_err("loop");
    assert!(matches!(err, HttpError::TooManyRedirects { .. }), "{err}");
    // The first request and 30 redirects followed.
    assert_eq!(s.hits.load(Ordering::SeqCst), 31);
}

#[tokio::test]
async fn read_timeout_names_the_seconds() {
    let s = serve().await;
    let mut req = request(format!("http://{}/sleep", s.addr));
    req.read_timeout = Duration::from_millis(300);
    let err = call(&req).await.expect_err("timeout");
    assert!(matches!(err, HttpError::ReadTimeout { .. }), "{err}");
    assert!(err.to_string().contains("0.3s"), "{err}");
}

#[tokio::test]
async fn read_timeout_applies_to_each_wait_not_the_whole_answer() {
    // Four parts 150 ms apart (450 ms in all) with a 400 ms read timeout.
    let addr = raw_server(
        vec![
            b"HTTP/1.1 200 OK\r\nX-Rep: a\r\nx-rep: b\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabc\r\n",
            b"2;ext=1\r\nde\r\n",
            b"0\r\nTrailer: x\r\n\r\n",
        ],
        Duration::from_millis(150),
    )
    .await;
    let mut req = request(format!("http://{addr}/"));
    req.read_timeout = Duration::from_millis(400);
    let out = call(&req).await.expect("call");
    assert_eq!(out["body"], "abcde");
    // Names as first received, repeated headers joined.
    assert_eq!(out["headers"]["X-Rep"], "a, b");
    assert_eq!(out["headers"]["Transfer-Encoding"], "chunked");
}

#[tokio::test]
async fn body_until_close_and_latin1_header_values() {
    let addr = raw_server(
        vec![b"HTTP/1.0 200 OK\r\nX-Name: caf\xe9\r\n\r\nall ", b"of it"],
        Duration::from_millis(10),
    )
    .await;
    let out = call(&request(format!("http://{addr}/")))
        .await
        .expect("call");
    assert_eq!(out["body"], "all of it");
    assert_eq!(out["headers"]["X-Name"], "café");
}

#[tokio::test]
async fn connection_refused_names_host_and_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = call(&request(format!("http://{addr}/")))
        .await
        .expect_err("refused");
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn bad_urls_are_refused_before_connecting() {
    for url in ["http://:80/x", "ftp://example.com/", "example.com/x", ""] {
        let err = call(&request(url.to_owned())).await.expect_err(url);
        assert!(matches!(err, HttpError::BadUrl { .. }), "{url}: {err}");
    }
    let mut req = request("http://127.0.0.1:9/".to_owned());
    req.headers = vec![("X-Bad".to_owned(), "a\r\nInjected: 1".to_owned())];
    let err = call(&req).await.expect_err("header");
    assert!(matches!(err, HttpError::BadRequest { .. }), "{err}");
}

#[tokio::test]
async fn ipv6_literals_work() {
    let Ok(s) = serve_on("[::1]:0").await else {
        return; // no IPv6 loopback on this machine
    };
    let body = echo(&request(format!("http://[::1]:{}/echo", s.addr.port()))).await;
    assert_eq!(body["headers"]["host"], format!("[::1]:{}", s.addr.port()));
}

#[tokio::test]
async fn https_verifies_by_default_and_verify_tls_false_skips_it() {
    let addr = tls_server().await;
    let mut req = request(format!("https://localhost:{}/", addr.port()));
    let err = call(&req).await.expect_err("self-signed");
    assert!(matches!(err, HttpError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("verify_tls: false"), "{err}");
    req.verify_tls = false;
    let out = call(&req).await.expect("insecure call");
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "secure");
}

/// An https server with a fresh self-signed certificate for localhost, answering every
/// request with "secure".
async fn tls_server() -> SocketAddr {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(reply(200, "text/plain", "secure"))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn origin_changes_follow_requests_should_strip_auth() {
    let u = |s: &str| Url::parse(s).expect("url");
    assert!(!leaves_origin(&u("http://a/x"), &u("http://a:80/y")));
    assert!(!leaves_origin(&u("http://a/x"), &u("https://a/y")));
    assert!(leaves_origin(&u("https://a/x"), &u("http://a/y")));
    assert!(leaves_origin(&u("http://a/x"), &u("http://b/x")));
    assert!(leaves_origin(&u("http://a:8080/x"), &u("http://a:8081/x")));
    assert!(!leaves_origin(&u("http://a:8080/x"), &u("http://a:8080/z")));
}
