//! The built-in demo service, run as `meshdrill mesh serve-demo` (one process per
//! replica): settable latency distribution, failure rate and status, payload size,
//! per-path token-bucket rate limits, and a forward mode that calls another mesh
//! service through this service's sidecar listener, like the go-demo-8 demo's
//! `repeater` forwarding to `?addr=URL`.
//!
//! It answers on 127.0.0.1 only and sends traffic only to its sidecar listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::MeshError;
use super::spec::{DemoConfig, Latency, RateLimit};

/// Everything one demo replica needs.
#[derive(Debug, Clone)]
pub struct DemoServer {
    pub service: String,
    pub replica: usize,
    pub port: u16,
    /// The service's sidecar (outbound) listener.
    pub outbound: SocketAddr,
    pub config: DemoConfig,
}

/// Header naming the replica that answered (`go-demo-8-1`).
pub const REPLICA_HEADER: &str = "x-meshdrill-replica";

struct Bucket {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

struct Shared {
    server: DemoServer,
    buckets: Mutex<HashMap<String, Bucket>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl DemoServer {
    /// Serves until the process is killed.
    pub fn run(self) -> Result<(), MeshError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MeshError::io("tokio runtime"))?;
        rt.block_on(self.serve())
    }

    async fn serve(self) -> Result<(), MeshError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(MeshError::io(addr.to_string()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let shared = Arc::new(Shared {
            server: self,
            buckets: Mutex::new(HashMap::new()),
            client,
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}

fn respond(shared: &Shared, status: u16, body: String, payload: usize) -> Response<Full<Bytes>> {
    let mut body = body.into_bytes();
    if body.len() < payload {
        body.resize(payload - 1, b'.');
        body.push(b'\n');
    }
    let s = &shared.server;
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/plain")
        .header(REPLICA_HEADER, format!("{}-{}", s.service, s.replica))
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// A latency sample: fixed, or log-normal through p50 and p99.
pub fn sample_latency(l: &Latency) -> Duration {
    sample_latency_with(l, &mut rand::rng())
}

/// [`sample_latency`] drawing from `rng`.
pub fn sample_latency_with<R: rand::Rng + ?Sized>(l: &Latency, rng: &mut R) -> Duration {
    let ms = if l.p99_ms <= l.p50_ms || l.p50_ms <= 0.0 {
        l.p50_ms
    } else {
        let sigma = (l.p99_ms / l.p50_ms).ln() / 2.326_348;
        // Box–Muller.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        l.p50_ms * (sigma * z).exp()
    };
    Duration::from_secs_f64((ms.clamp(0.0, 600_000.0)) / 1000.0)
}

fn take_token(shared: &Shared, path: &str, rl: &RateLimit) -> bool {
    let Ok(mut buckets) = shared.buckets.lock() else {
        return true;
    };
    let now = Instant::now();
    let b = buckets.entry(path.to_string()).or_insert(Bucket {
        tokens: f64::from(rl.burst),
        last: now,
        blocked_until: None,
    });
    b.tokens =
        (b.tokens + now.duration_since(b.last).as_secs_f64() * rl.rps).min(f64::from(rl.burst));
    b.last = now;
    if let Some(until) = b.blocked_until {
        if now < until {
            return false;
        }
        b.blocked_until = None;
    }
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        true
    } else {
        if rl.cooldown_ms > 0 {
            b.blocked_until = Some(now + Duration::from_millis(rl.cooldown_ms));
        }
        false
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let cfg = &shared.server.config;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let over = cfg.paths.get(&path);
    let latency = over.and_then(|o| o.latency).unwrap_or(cfg.latency);
    let fail_rate = over.and_then(|o| o.fail_rate).unwrap_or(cfg.fail_rate);
    let fail_status = over.and_then(|o| o.fail_status).unwrap_or(cfg.fail_status);
    let payload = over.and_then(|o| o.payload).unwrap_or(cfg.payload);
    if let Some(rl) = over.and_then(|o| o.rate_limit.as_ref())
        && !take_token(shared, &path, rl)
    {
        return respond(shared, rl.status, "rate limited\n".into(), 0);
    }
    let d = sample_latency(&latency);
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
    if fail_rate > 0.0 && rand::random::<f64>() < fail_rate {
        return respond(
            shared,
            fail_status,
            format!(
                "{} failed (injected by the demo service)\n",
                shared.server.service
            ),
            payload,
        );
    }
    if cfg.forward {
        let addr = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "addr")
            .map(|(_, v)| v.into_owned())
            .or_else(|| cfg.forward_to.clone());
        if let Some(addr) = addr {
            return forward(shared, &addr, req.headers()).await;
        }
    }
    let s = &shared.server;
    respond(
        shared,
        200,
        format!("hello from {} replica {}\n", s.service, s.replica),
        payload,
    )
}

/// Whether a request header is passed on by the forward mode: all but the hop-by-hop
/// ones, the framing and `Host` (set for the call) and Envoy's per-hop `x-envoy-*`
/// (each hop's Envoy sets its own) — so headers such as `end-user` reach the next
/// service's VirtualService matches, as an application propagating them does in Istio.
fn passed_on(name: &header::HeaderName) -> bool {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let n = name.as_str();
    !(HOP_BY_HOP.contains(&n) || n == "host" || n == "content-length" || n.starts_with("x-envoy-"))
}

/// Calls `addr` (an http:// URL naming a mesh service) through the sidecar listener,
/// with the incoming request's end-to-end headers, and answers with its status and
/// body.
async fn forward(shared: &Shared, addr: &str, incoming: &http::HeaderMap) -> Response<Full<Bytes>> {
    let Ok(url) = url::Url::parse(addr) else {
        return respond(shared, 400, format!("addr {addr:?} is not a URL\n"), 0);
    };
    let Some(host) = url.host_str() else {
        return respond(shared, 400, format!("addr {addr:?} has no host\n"), 0);
    };
    if url.scheme() != "http" {
        return respond(
            shared,
            400,
            "only http:// addresses are forwarded\n".into(),
            0,
        );
    }
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let uri = format!("http://{}{path}", shared.server.outbound);
    let mut req = match Request::get(uri)
        .header(header::HOST, authority)
        .body(Full::new(Bytes::new()))
    {
        Ok(r) => r,
        Err(e) => return respond(shared, 400, format!("bad forward request: {e}\n"), 0),
    };
    for (k, v) in incoming.iter().filter(|(k, _)| passed_on(k)) {
        req.headers_mut().append(k.clone(), v.clone());
    }
    let call = tokio::time::timeout(Duration::from_secs(60), shared.client.request(req)).await;
    match call {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let body = match resp.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(e) => return respond(shared, 502, format!("reading {addr}: {e}\n"), 0),
            };
            respond(shared, status, body, 0)
        }
        Ok(Err(e)) => respond(shared, 502, format!("calling {addr}: {e}\n"), 0),
        Err(_) => respond(shared, 504, format!("calling {addr}: timed out\n"), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_passes_end_to_end_headers_only() {
        let h = |s: &'static str| header::HeaderName::from_static(s);
        for yes in [
            "end-user",
            "x-request-id",
            "authorization",
            "cookie",
            "x-b3-traceid",
        ] {
            assert!(passed_on(&h(yes)), "{yes}");
        }
        for no in [
            "host",
            "connection",
            "transfer-encoding",
            "content-length",
            "x-envoy-attempt-count",
            "x-envoy-expected-rq-timeout-ms",
        ] {
            assert!(!passed_on(&h(no)), "{no}");
        }
    }

    #[test]
    fn latency_distribution_hits_its_percentiles() {
        use rand::SeedableRng;
        // Seeded: the outcome is fixed. The bounds are what 200,000 draws support: the
        // share of draws at or below the set p50 (p99) is 0.5 (0.99) within 4σ of a
        // binomial share (σ 0.0011 and 0.00022), which a random seed misses with
        // probability 1.3e-4 for both checks together; in latency terms ±0.07 ms around
        // 5 ms and ±3.2 ms around 80 ms (the old 4.5–5.5 ms and 65–97 ms on 20,000
        // draws were 9σ and 6σ wide).
        let l = Latency {
            p50_ms: 5.0,
            p99_ms: 80.0,
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(15);
        let n = 200_000;
        let draws: Vec<f64> = (0..n)
            .map(|_| sample_latency_with(&l, &mut rng).as_secs_f64() * 1000.0)
            .collect();
        for (q, at) in [(0.5, l.p50_ms), (0.99, l.p99_ms)] {
            let share = draws.iter().filter(|d| **d <= at).count() as f64 / n as f64;
            let sigma = (q * (1.0 - q) / n as f64).sqrt();
            assert!(
                (share - q).abs() <= 4.0 * sigma,
                "{share} of draws at or below {at} ms, expected {q} ± {:.5} (4σ)",
                4.0 * sigma
            );
        }
        let fixed = Latency {
            p50_ms: 7.0,
            p99_ms: 7.0,
        };
        assert_eq!(sample_latency(&fixed), Duration::from_millis(7));
    }
}
