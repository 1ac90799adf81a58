//! Prometheus as a source of SLO values: one PromQL expression read over the HTTP API
//! (`/api/v1/query` at an instant, `/api/v1/query_range` over a phase), each call
//! bounded by [`QUERY_TIMEOUT`].
//!
//! # What it owns
//! The HTTP calls to Prometheus and the decoding of its answers ([`decode`]) into the
//! one value (or one series of values) an objective judges, with typed errors that
//! say whether the query ([`PromError::is_input`]: exit 2) or the server (exit 3) is
//! at fault.
//!
//! # What it must not do
//! Judge or print: [`crate::slo`] judges the values, `scenario` decides when to ask,
//! `cli` prints. Plain `http://` only (no TLS, no credentials).

pub mod decode;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use decode::Shape;

/// How long one query may take, connection included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why a query gave no value.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The URL cannot be made into a request (the objective's parser should have
    /// refused it).
    #[error("{url} is not a usable Prometheus URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// No answer: refused, unreachable, or not within [`QUERY_TIMEOUT`].
    #[error(
        "cannot reach Prometheus at {url}: {reason}; check that Prometheus runs there and that the url is the base of its HTTP API (e.g. http://127.0.0.1:9090)"
    )]
    Unreachable { url: String, reason: String },
    /// An HTTP status other than 200 that is not a refusal of the query.
    #[error("Prometheus at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// An answer without a usable value (nothing, several series, a range vector, a
    /// refused query, or not the API's JSON).
    #[error("{shape}")]
    Answer {
        url: String,
        #[source]
        shape: Shape,
    },
}

impl PromError {
    /// Whether the query is at fault (exit 2), rather than the server (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            PromError::Answer { shape, .. } => shape.is_input(),
            PromError::BadUrl { .. } => true,
            PromError::Unreachable { .. } | PromError::Status { .. } => false,
        }
    }
}

/// A client for one Prometheus.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    /// A client for the API at `base` (`http://host:port[/prefix]`).
    pub fn new(base: &str) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(QUERY_TIMEOUT));
        Self {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(http),
        }
    }

    /// The value of `query` at `time` (unix seconds; now when `None`).
    pub async fn instant(&self, query: &str, time: Option<f64>) -> Result<f64, PromError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let body = self.get("query", &params).await?;
        decode::instant(&body).map_err(|shape| self.answer(shape))
    }

    /// The points of `query` from `start` to `end` (unix seconds), `step` apart.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>, PromError> {
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        let body = self.get("query_range", &params).await?;
        decode::range(&body).map_err(|shape| self.answer(shape))
    }

    fn answer(&self, shape: Shape) -> PromError {
        PromError::Answer {
            url: self.base.clone(),
            shape,
        }
    }

    async fn get(&self, endpoint: &str, params: &[(&str, String)]) -> Result<Bytes, PromError> {
        let bad = |reason: String| PromError::BadUrl {
            url: self.base.clone(),
            reason,
        };
        let mut u = url::Url::parse(&self.base).map_err(|e| bad(e.to_string()))?;
        let path = format!("{}/api/v1/{endpoint}", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u.query_pairs_mut().extend_pairs(params);
        let uri: http::Uri = u
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("meshdrill/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| bad(e.to_string()))?;
        let unreachable = |reason: String| PromError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(chain(&e)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, PromError>((status, body))
        };
        let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, call)
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {} s", QUERY_TIMEOUT.as_secs()))
            })??;
        if status == 200 {
            return Ok(body);
        }
        // 400 (bad_data) and 422 (execution) carry the API's refusal of the query.
        if matches!(status, 400 | 422)
            && let Err(shape @ Shape::Refused { .. }) = decode::instant(&body)
        {
            return Err(self.answer(shape));
        }
        let text = String::from_utf8_lossy(&body);
        let text: String = text.trim().chars().take(200).collect();
        Err(PromError::Status {
            url: self.base.clone(),
            status,
            body: if text.is_empty() {
                "(no body)".into()
            } else {
                text
            },
        })
    }
}

/// An error and its sources, `a: b: c` (hyper's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that answers every connection with `status` and `body`.
    async fn answering(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_refused_query_is_the_users_a_server_error_the_targets() {
        let url = answering(
            "400 Bad Request",
            r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}"#,
        )
        .await;
        let e = Prometheus::new(&url)
            .instant("sum(", None)
            .await
            .expect_err("refused");
        assert!(e.is_input(), "{e}");
        assert!(e.to_string().contains("parse error"), "{e}");

        let url = answering("503 Service Unavailable", "not ready").await;
        let e = Prometheus::new(&url)
            .range("up", 1.0, 2.0, Duration::from_secs(1))
            .await
            .expect_err("503");
        assert!(
            matches!(&e, PromError::Status { status: 503, body, .. } if body == "not ready"),
            "{e}"
        );
        assert!(!e.is_input());

        let url = answering(
            "200 OK",
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"0"],[2,"+Inf"]]}]}}"#,
        )
        .await;
        let pts = Prometheus::new(&url)
            .range("up", 1.0, 2.0, Duration::from_secs(1))
            .await
            .expect("points");
        assert_eq!(pts, vec![(1.0, 0.0), (2.0, f64::INFINITY)]);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_an_input_error() {
        // A port nobody listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let p = Prometheus::new(&format!("http://127.0.0.1:{port}"));
        let e = p.instant("up", None).await.expect_err("nobody listens");
        assert!(matches!(e, PromError::Unreachable { .. }), "{e}");
        assert!(!e.is_input());
        let text = e.to_string();
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
