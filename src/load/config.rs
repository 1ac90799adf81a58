//! [`LoadConfig`]: a validated description of one load run, built with
//! [`LoadConfig::builder`]. Nothing here opens a socket.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use super::schedule::{Rate, Share, Stop};

/// Why a load configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The target URL does not parse, or is not an absolute http(s) URL with a host.
    #[error("invalid target URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// A header is not `Name: value`, or its name or value is not valid HTTP.
    #[error("invalid header {header:?}: {reason}")]
    Header { header: String, reason: String },
    /// A header that frames the message or manages the connection, which meshdrill
    /// sets itself (a user value would desynchronise kept-alive connections).
    #[error("header {name:?} is not allowed in -H: meshdrill sets it itself ({why}); {what}")]
    ReservedHeader {
        name: String,
        why: &'static str,
        what: &'static str,
    },
    /// The body is larger than [`MAX_BODY`].
    #[error("the request body is {len} bytes, more than the limit of {MAX_BODY} (64 MiB)")]
    Body { len: usize },
    /// The target port is 0, which is not a destination.
    #[error(
        "invalid target URL {url:?}: port 0 is not a destination; give the port the server listens on"
    )]
    PortZero { url: String },
    /// The HTTP method is not a valid token.
    #[error("invalid HTTP method {0:?}")]
    Method(String),
    /// A rate is zero, negative or not a finite number.
    #[error("invalid rate {value}: {what} must be a finite number of requests per second > 0")]
    Rate { what: &'static str, value: f64 },
    /// A ramp has a zero duration, or one longer than a year.
    #[error("invalid ramp: its duration must be > 0 and at most a year")]
    RampDuration,
    /// Zero connections, or more than [`MAX_CONNS`].
    #[error("the number of connections must be between 1 and {MAX_CONNS}")]
    Conns,
    /// `-n 0` or a zero duration.
    #[error("invalid stop condition: {0}")]
    Stop(&'static str),
    /// A zero per-request timeout, or one longer than a year.
    #[error("the per-request timeout must be > 0 and at most a year")]
    Timeout,
    /// An interval shorter than 10 ms or longer than a year.
    #[error("the reporting interval must be between 10ms and a year, got {0:?}")]
    Interval(Duration),
    /// A worker index not below the number of workers, or no workers.
    #[error(
        "invalid worker share: worker index {index} of {count} workers (the index must be 0..{count})"
    )]
    Share { index: u32, count: u32 },
    /// Fewer connections than workers: some worker would have none.
    #[error(
        "{conns} connections cannot be split across {workers} workers: give -c at least {workers}"
    )]
    TooFewConns { conns: usize, workers: u32 },
    /// Fewer requests (-n) than workers: some worker would have none.
    #[error(
        "{requests} requests cannot be split across {workers} workers: give -n at least {workers}"
    )]
    TooFewRequests { requests: u64, workers: u32 },
}

/// Most connections one run opens (one worker task each).
pub const MAX_CONNS: usize = 65_535;
/// Largest request body (64 MiB): `--body-file` reads at most this much (a device
/// such as /dev/zero would otherwise fill the memory), and every worker sends it whole.
pub const MAX_BODY: usize = 64 << 20;
/// Longest duration, timeout, interval or ramp accepted: keeps all instant arithmetic
/// far from overflow.
pub const MAX_SPAN: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far from now a common start time may be (either way): a run waits at most
/// this long for it, and one that starts late counts at most this much as overdue.
pub const MAX_START_SKEW: Duration = Duration::from_secs(3600);

/// The target of a run: where to connect and what to put in the request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Absolute URI (used for HTTP/2, whose `:authority` comes from it).
    pub(crate) absolute: Uri,
    /// Origin-form URI (`/path?query`), used for HTTP/1.1.
    pub(crate) origin: Uri,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(bad(&format!("scheme {other:?} is not http or https"))),
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(bad("no host")),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| bad("no port"))?;
        if port == 0 {
            return Err(ConfigError::PortZero {
                url: url.to_string(),
            });
        }
        let mut origin = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            origin.push('?');
            origin.push_str(q);
        }
        let absolute: Uri = parsed
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let origin: Uri = origin
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        Ok(Self {
            https,
            host,
            port,
            absolute,
            origin,
        })
    }

    /// `host:port` as it belongs in a Host header (port omitted when it is the default).
    fn authority(&self) -> String {
        self.absolute
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| self.host.clone())
    }

    /// Whether the scheme is https.
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// A validated load run: target, request, connections, schedule, limits.
///
/// Build it with [`LoadConfig::builder`]; every field is checked in
/// [`LoadConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    pub(crate) target: Target,
    pub(crate) method: Method,
    /// Headers for every request, Host included (HTTP/1.1).
    pub(crate) headers: HeaderMap,
    /// The authority used for HTTP/2 (the Host override, if any).
    pub(crate) h2_uri: Uri,
    pub(crate) body: Bytes,
    pub(crate) conns: usize,
    pub(crate) rate: Rate,
    pub(crate) stop: Stop,
    pub(crate) timeout: Duration,
    pub(crate) http2: bool,
    pub(crate) insecure: bool,
    pub(crate) interval: Duration,
    pub(crate) stop_when_refused: bool,
    pub(crate) ok_latency: bool,
    /// This process's part of a distributed run ([`Share::WHOLE`] for a single run);
    /// `conns` is then already this share's connections.
    pub(crate) share: Share,
    /// All the workers' connections (= `conns` for a single run).
    pub(crate) total_conns: usize,
    /// The common start of a distributed run: the schedule counts from it.
    pub(crate) start_at: Option<SystemTime>,
}

impl LoadConfig {
    /// Starts a configuration for `url` with the defaults: GET, 50 connections, closed
    /// loop for 10 s, 10 s timeout, HTTP/1.1, certificate checks on, 1 s interval.
    pub fn builder(url: impl Into<String>) -> LoadConfigBuilder {
        LoadConfigBuilder {
            url: url.into(),
            method: "GET".to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
            conns: 50,
            rate: Rate::Max,
            stop: Stop::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(10),
            http2: false,
            insecure: false,
            interval: Duration::from_secs(1),
            stop_when_refused: false,
            ok_latency: false,
            share: Share::WHOLE,
            start_at: None,
        }
    }

    /// This process's share of a distributed run ([`Share::WHOLE`] for a single run).
    pub fn share(&self) -> Share {
        self.share
    }
    /// The connections of the whole run, all workers together.
    pub fn total_conns(&self) -> usize {
        self.total_conns
    }
    /// The common start time of a distributed run, if set.
    pub fn start_at(&self) -> Option<SystemTime> {
        self.start_at
    }
    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }
    /// Every request header, `Host` included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The request body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// Whether HTTP/2 is used.
    pub fn is_http2(&self) -> bool {
        self.http2
    }
    /// Whether any certificate is accepted.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }
    /// Whether a run stops early when every connection is refused.
    pub fn stops_when_refused(&self) -> bool {
        self.stop_when_refused
    }
    /// Whether the latency of 2xx answers is also recorded.
    pub fn ok_latency(&self) -> bool {
        self.ok_latency
    }
    /// Whether this run splits across `workers` workers (each gets a connection and,
    /// with -n, a request).
    pub fn check_split(&self, workers: u32) -> Result<(), ConfigError> {
        check_split(self.total_conns, self.stop, workers)
    }
    /// The same run, as one worker's share (for tests and the fleet coordinator).
    pub fn with_share(&self, share: Share) -> Self {
        let mut c = self.clone();
        c.conns = share.conns(self.total_conns);
        c.share = share;
        c
    }
    /// The same run with a common start time.
    pub fn with_start_at(&self, at: SystemTime) -> Self {
        let mut c = self.clone();
        c.start_at = Some(at);
        c
    }

    /// Where the schedule starts, on both clocks: the common start time of a
    /// distributed run (in the future: the run waits for it; in the past: its overdue
    /// slots are late or missed), else now.
    pub(crate) fn anchor(&self) -> (Instant, SystemTime) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let Some(at) = self.start_at else {
            return (now, wall);
        };
        let start = match at.duration_since(wall) {
            Ok(ahead) => now.checked_add(ahead.min(MAX_START_SKEW)),
            Err(e) => now.checked_sub(e.duration().min(MAX_START_SKEW)),
        };
        match start {
            Some(s) => (s, at),
            None => (now, wall),
        }
    }

    /// The schedule: closed loop, fixed rate or ramp.
    pub fn rate(&self) -> Rate {
        self.rate
    }
    /// When the run stops.
    pub fn stop(&self) -> Stop {
        self.stop
    }
    /// Number of connections (one worker each).
    pub fn conns(&self) -> usize {
        self.conns
    }
    /// The interval at which snapshots are merged and reported.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The target URL.
    pub fn url(&self) -> &Uri {
        &self.target.absolute
    }
}

/// Unchecked settings for a [`LoadConfig`]; [`build`](Self::build) validates them.
#[derive(Debug, Clone)]
pub struct LoadConfigBuilder {
    url: String,
    method: String,
    headers: Vec<String>,
    body: Bytes,
    conns: usize,
    rate: Rate,
    stop: Stop,
    timeout: Duration,
    http2: bool,
    insecure: bool,
    interval: Duration,
    stop_when_refused: bool,
    ok_latency: bool,
    share: Share,
    start_at: Option<SystemTime>,
}

impl LoadConfigBuilder {
    /// Makes this run worker `index` of `count` of a distributed run: it takes the
    /// global slots `m ≡ index (mod count)`, its part of `-n` and of the connections
    /// (`conns` stays the total of all workers).
    pub fn share(mut self, index: u32, count: u32) -> Self {
        // Checked in build(), which names a bad one.
        self.share = Share::unchecked(index, count);
        self
    }
    /// The common start time: the schedule counts from it (a run waits for it).
    pub fn start_at(mut self, at: SystemTime) -> Self {
        self.start_at = Some(at);
        self
    }

    /// HTTP method (default GET).
    pub fn method(mut self, m: impl Into<String>) -> Self {
        self.method = m.into();
        self
    }
    /// Adds a header given as `Name: value` (a `Host` header overrides the URL's
    /// authority, for mesh routing).
    pub fn header(mut self, h: impl Into<String>) -> Self {
        self.headers.push(h.into());
        self
    }
    /// Request body, sent with every request.
    pub fn body(mut self, b: impl Into<Bytes>) -> Self {
        self.body = b.into();
        self
    }
    /// Number of connections, one worker each (default 50).
    pub fn conns(mut self, n: usize) -> Self {
        self.conns = n;
        self
    }
    /// The schedule (default [`Rate::Max`], closed loop).
    pub fn rate(mut self, r: Rate) -> Self {
        self.rate = r;
        self
    }
    /// When to stop (default 10 s).
    pub fn stop(mut self, s: Stop) -> Self {
        self.stop = s;
        self
    }
    /// Per-request timeout, connect included (default 10 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// HTTP/2 (prior knowledge on http, ALPN h2 on https).
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }
    /// Accept any server certificate (https only). Off unless asked for.
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }
    /// Snapshot interval (default 1 s, at least 10 ms).
    pub fn interval(mut self, i: Duration) -> Self {
        self.interval = i;
        self
    }

    /// Stop early when every connection has been refused for
    /// [`REFUSED_STOP`](super::REFUSED_STOP) from the start, with no answer and no other
    /// error (nothing listens on the port); [`LoadReport::refused_stop`] then says so.
    /// Off by default (a drill's background load rides out an outage).
    ///
    /// [`LoadReport::refused_stop`]: super::LoadReport::refused_stop
    /// Also record the latency of 2xx answers alone ([`crate::load::Recorded::ok`]).
    pub fn ok_latency(mut self, on: bool) -> Self {
        self.ok_latency = on;
        self
    }

    pub fn stop_when_refused(mut self, on: bool) -> Self {
        self.stop_when_refused = on;
        self
    }

    /// Validates every setting.
    pub fn build(self) -> Result<LoadConfig, ConfigError> {
        let target = Target::parse(&self.url)?;
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| ConfigError::Method(self.method.clone()))?;
        let mut headers = HeaderMap::new();
        for h in &self.headers {
            let (name, value) = parse_header(h)?;
            reserved(&name)?;
            headers.append(name, value);
        }
        if !headers.contains_key(HOST) {
            let v = HeaderValue::from_str(&target.authority()).map_err(|e| ConfigError::Url {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
            headers.insert(HOST, v);
        }
        let h2_uri = h2_uri(&target, &headers).map_err(|reason| ConfigError::Header {
            header: "Host".to_string(),
            reason,
        })?;
        self.rate.validate()?;
        if self.body.len() > MAX_BODY {
            return Err(ConfigError::Body {
                len: self.body.len(),
            });
        }
        match self.stop {
            Stop::Requests(0) => return Err(ConfigError::Stop("the request count must be >= 1")),
            Stop::Duration(d) if d.is_zero() => {
                return Err(ConfigError::Stop("the duration must be > 0"));
            }
            Stop::Duration(d) if d > MAX_SPAN => {
                return Err(ConfigError::Stop("the duration must be at most a year"));
            }
            _ => {}
        }
        if self.conns == 0 || self.conns > MAX_CONNS {
            return Err(ConfigError::Conns);
        }
        if self.timeout.is_zero() || self.timeout > MAX_SPAN {
            return Err(ConfigError::Timeout);
        }
        if self.interval < Duration::from_millis(10) || self.interval > MAX_SPAN {
            return Err(ConfigError::Interval(self.interval));
        }
        let share = self.share;
        if share.index() >= share.count() {
            return Err(ConfigError::Share {
                index: share.index(),
                count: share.count(),
            });
        }
        check_split(self.conns, self.stop, share.count())?;
        Ok(LoadConfig {
            target,
            method,
            headers,
            h2_uri,
            body: self.body,
            conns: share.conns(self.conns),
            total_conns: self.conns,
            share,
            start_at: self.start_at,
            rate: self.rate,
            stop: self.stop,
            timeout: self.timeout,
            http2: self.http2,
            insecure: self.insecure,
            interval: self.interval,
            stop_when_refused: self.stop_when_refused,
            ok_latency: self.ok_latency,
        })
    }
}

/// Whether a run of `conns` connections stopping at `stop` splits across `workers`
/// workers with at least one connection (and, with -n, one request) each.
fn check_split(conns: usize, stop: Stop, workers: u32) -> Result<(), ConfigError> {
    if workers == 0 {
        return Err(ConfigError::Share { index: 0, count: 0 });
    }
    if conns < workers as usize {
        return Err(ConfigError::TooFewConns { conns, workers });
    }
    if let Stop::Requests(n) = stop
        && n < u64::from(workers)
    {
        return Err(ConfigError::TooFewRequests {
            requests: n,
            workers,
        });
    }
    Ok(())
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let bad = |reason: &str| ConfigError::Header {
        header: h.to_string(),
        reason: reason.to_string(),
    };
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| bad("expected 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| bad(&e.to_string()))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|e| bad(&e.to_string()))?;
    Ok((name, value))
}

/// Headers meshdrill writes itself: the message framing (from the body) and the
/// connection management (keep-alive, one connection per worker). A user value would
/// go on the wire next to a body of another length and desynchronise kept-alive
/// connections, or fight the connection handling; curl and oha likewise derive them.
/// `Host` is not among them: overriding it is how a mesh routes.
fn reserved(name: &HeaderName) -> Result<(), ConfigError> {
    const FRAMING: &str = "use --body or --body-file; the length is set from the body";
    const CONN: &str = "meshdrill keeps one kept-alive connection per -c; leave it out";
    let (why, what) = match name.as_str() {
        "content-length" => ("the length of --body/--body-file", FRAMING),
        "transfer-encoding" => ("bodies are sent with a Content-Length", FRAMING),
        "connection" | "keep-alive" | "proxy-connection" => ("connection management", CONN),
        "upgrade" => (
            "the connection stays HTTP; protocol upgrades are not load tested",
            "leave it out (use --http2 for HTTP/2)",
        ),
        _ => return Ok(()),
    };
    Err(ConfigError::ReservedHeader {
        name: name.as_str().to_string(),
        why,
        what,
    })
}

/// The absolute URI for HTTP/2 requests: the Host header (if overridden) becomes the
/// `:authority`.
fn h2_uri(target: &Target, headers: &HeaderMap) -> Result<Uri, String> {
    let Some(host) = headers.get(HOST) else {
        return Ok(target.absolute.clone());
    };
    let host = host.to_str().map_err(|e| e.to_string())?;
    let path = target
        .origin
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let scheme = if target.https { "https" } else { "http" };
    format!("{scheme}://{host}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_rejects_bad_ones() {
        let t = Target::parse("http://127.0.0.1:8080/a?b=1").expect("ok");
        assert_eq!(
            (t.host.as_str(), t.port, t.https),
            ("127.0.0.1", 8080, false)
        );
        assert_eq!(t.origin.to_string(), "/a?b=1");
        let t = Target::parse("https://[::1]/").expect("ok");
        assert_eq!((t.host.as_str(), t.port, t.https), ("::1", 443, true));
        for bad in [
            "",
            "127.0.0.1:80",
            "ftp://x/",
            "http://",
            "not a url",
            "http://:80/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_header_defaults_to_the_url_and_can_be_overridden() {
        let c = LoadConfig::builder("http://127.0.0.1:9/x")
            .build()
            .expect("ok");
        assert_eq!(c.headers[HOST], "127.0.0.1:9");
        let c = LoadConfig::builder("http://127.0.0.1:9/x")
            .header("host: reviews.default")
            .build()
            .expect("ok");
        assert_eq!(c.headers[HOST], "reviews.default");
        assert_eq!(c.h2_uri.to_string(), "http://reviews.default/x");
    }

    #[test]
    fn rejects_bad_settings() {
        let b = || LoadConfig::builder("http://127.0.0.1:9/");
        assert!(b().header("nocolon").build().is_err());
        assert!(b().header("bad name: v").build().is_err());
        // Regression: framing headers went on the wire as given, with a body of
        // another length, desynchronising kept-alive connections.
        for h in [
            "Content-Length: 99",
            "content-length: abc",
            "Transfer-Encoding: chunked",
            "Connection: close",
            "Upgrade: websocket",
        ] {
            let e = b().header(h).build().expect_err(h);
            assert!(matches!(e, ConfigError::ReservedHeader { .. }), "{h}: {e}");
        }
        assert!(b().header("Host: reviews").build().is_ok());
        // Regression: port 0 was accepted and every connect failed (exit 3).
        assert!(matches!(
            LoadConfig::builder("http://127.0.0.1:0/").build(),
            Err(ConfigError::PortZero { .. })
        ));
        assert!(b().method("G T").build().is_err());
        assert!(b().conns(0).build().is_err());
        assert!(b().conns(MAX_CONNS + 1).build().is_err());
        let forever = Duration::from_secs(u64::MAX);
        assert!(b().stop(Stop::Duration(forever)).build().is_err());
        assert!(b().timeout(forever).build().is_err());
        assert!(b().interval(forever).build().is_err());
        assert!(b().stop(Stop::Requests(0)).build().is_err());
        assert!(b().stop(Stop::Duration(Duration::ZERO)).build().is_err());
        assert!(b().timeout(Duration::ZERO).build().is_err());
        assert!(b().interval(Duration::from_millis(1)).build().is_err());
        assert!(b().rate(Rate::Fixed(0.0)).build().is_err());
        assert!(b().rate(Rate::Fixed(-1.0)).build().is_err());
        assert!(b().rate(Rate::Fixed(f64::NAN)).build().is_err());
        let ramp = Rate::Ramp {
            from: 10.0,
            to: 100.0,
            over: Duration::ZERO,
        };
        assert!(b().rate(ramp).build().is_err());
    }
}
