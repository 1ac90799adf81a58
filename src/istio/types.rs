//! Validated value types: each has private fields and a checked constructor that
//! enforces exactly what Istio's validation (pkg/config/validation) accepts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a value was rejected; `allowed` says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid value {:?}: {}", self.value, self.allowed)
    }
}

impl std::error::Error for ValueError {}

fn bad(value: impl fmt::Display, allowed: impl Into<String>) -> ValueError {
    ValueError {
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

// === impl IstioDuration ===

/// A duration as Istio accepts it: Go syntax (`2s`, `150ms`, `1m30s`), at least 1 ms,
/// a whole number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IstioDuration(Duration);

const DURATION_ALLOWED: &str = "a Go duration such as 500ms, 2s or 1m30s (units h, m, s, ms, us, ns), at least 1ms and at most 9223372036s (Envoy's limit), in whole milliseconds";

/// The longest duration Envoy accepts where it converts to milliseconds (route
/// timeouts, per-try timeouts, fault delays): `i64::MAX` nanoseconds, in whole seconds.
/// Istio would accept more, and Envoy would then reject the whole route configuration.
pub const MAX_DURATION_SECS: u64 = 9_223_372_036;

impl IstioDuration {
    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn from_millis(ms: u64) -> Result<Self, ValueError> {
        Self::try_from_duration(Duration::from_millis(ms), &format!("{ms}ms"))
    }

    /// Istio's `timeout: 0s` means "disabled"; this parses that form too and returns
    /// `None` for it.
    pub fn parse_timeout(s: &str) -> Result<Option<Self>, ValueError> {
        let d = parse_go_duration(s).ok_or_else(|| bad(s, DURATION_ALLOWED))?;
        if d.is_zero() {
            return Ok(None);
        }
        Self::try_from_duration(d, s).map(Some)
    }

    fn try_from_duration(d: Duration, src: &str) -> Result<Self, ValueError> {
        if d < Duration::from_millis(1)
            || !d.subsec_nanos().is_multiple_of(1_000_000)
            || d > Duration::from_secs(MAX_DURATION_SECS)
        {
            return Err(bad(src, DURATION_ALLOWED));
        }
        Ok(Self(d))
    }
}

impl FromStr for IstioDuration {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let d = parse_go_duration(s).ok_or_else(|| bad(s, DURATION_ALLOWED))?;
        Self::try_from_duration(d, s)
    }
}

impl fmt::Display for IstioDuration {
    /// Formats in the shortest Go form that round-trips: `1.5s`, `150ms`, `2m`, `1h0m5s`
    /// is written as `3605s` — Istio accepts any unit, so seconds and milliseconds suffice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax for non-negative values: one or more
/// `<number><unit>` terms, decimals allowed, units ns us µs ms s m h. `0` alone is zero.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut ns = int.checked_mul(scale)?;
        // Fractions: exact in integer arithmetic up to the ns resolution Go keeps.
        let mut div: u128 = 1;
        let mut frac_val: u128 = 0;
        for d in frac.chars().take(18) {
            frac_val = frac_val * 10 + u128::from(d.to_digit(10)?);
            div *= 10;
        }
        ns = ns.checked_add(frac_val * scale / div)?;
        total_ns = total_ns.checked_add(ns)?;
        rest = tail;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    // Istio rejects durations above what protobuf Duration holds; cap at 10,000 years.
    if secs > 315_576_000_000 {
        return None;
    }
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

// === retry attempts ===

/// `retries.attempts` is a protobuf `int32`: 0 (no retries) to 2147483647.
pub const MAX_ATTEMPTS: u32 = i32::MAX as u32;

const ATTEMPTS_ALLOWED: &str = "an integer from 0 (no retries) to 2147483647";

/// Checks `retries.attempts` (as a number from a file).
pub fn attempts(n: i64) -> Result<u32, ValueError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_ATTEMPTS)
        .ok_or_else(|| bad(n, ATTEMPTS_ALLOWED))
}

/// Parses `--attempts` with the same bounds as [`attempts`].
pub fn parse_attempts(s: &str) -> Result<u32, ValueError> {
    s.parse::<i64>()
        .map_err(|_| bad(s, ATTEMPTS_ALLOWED))
        .and_then(attempts)
}

// === impl Percentage ===

/// `percentage.value`: 0, or 0.0001 to 100 (Istio's validation).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percentage(f64);

const PERCENT_ALLOWED: &str = "a number from 0.0001 to 100 (or 0)";

impl Percentage {
    pub const HUNDRED: Percentage = Percentage(100.0);
    pub const FIFTY: Percentage = Percentage(50.0);

    pub fn new(v: f64) -> Result<Self, ValueError> {
        if !v.is_finite() || !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
            return Err(bad(v, PERCENT_ALLOWED));
        }
        Ok(Self(v))
    }

    pub fn value(self) -> f64 {
        self.0
    }

    /// Envoy's FractionalPercent numerator per million, truncated as istiod does
    /// (`uint32(value * 10000)`).
    pub fn per_million(self) -> u32 {
        (self.0 * 10_000.0) as u32
    }

    /// The JSON number Istio would store: an integer when whole.
    pub fn to_json(self) -> serde_json::Value {
        if self.0.fract() == 0.0 {
            serde_json::Value::from(self.0 as u64)
        } else {
            serde_json::Value::from(self.0)
        }
    }
}

impl FromStr for Percentage {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let v: f64 = s
            .trim_end_matches('%')
            .parse()
            .map_err(|_| bad(s, PERCENT_ALLOWED))?;
        Self::new(v)
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

// === impl HttpStatus ===

/// `abort.httpStatus`: Istio accepts 200–600, Envoy rejects 600, so 200–599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpStatus(u16);

const STATUS_ALLOWED: &str = "an HTTP status code from 200 to 599";

impl HttpStatus {
    pub const SERVICE_UNAVAILABLE: HttpStatus = HttpStatus(503);

    pub fn new(code: i64) -> Result<Self, ValueError> {
        if !(200..=599).contains(&code) {
            return Err(bad(code, STATUS_ALLOWED));
        }
        Ok(Self(code as u16))
    }
    pub fn code(self) -> u16 {
        self.0
    }
}

impl FromStr for HttpStatus {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::new(s.parse().map_err(|_| bad(s, STATUS_ALLOWED))?)
    }
}

impl fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// === impl GrpcStatus ===

/// gRPC status names, with their numeric codes (what Envoy's fault filter takes).
pub const GRPC_STATUSES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `abort.grpcStatus`: a gRPC status name such as `UNAVAILABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcStatus(u8);

impl GrpcStatus {
    pub fn name(self) -> &'static str {
        GRPC_STATUSES[usize::from(self.0)]
    }
    pub fn code(self) -> u8 {
        self.0
    }
}

impl FromStr for GrpcStatus {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        GRPC_STATUSES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self(i as u8))
            .ok_or_else(|| {
                bad(
                    s,
                    format!("a gRPC status name: {}", GRPC_STATUSES.join(", ")),
                )
            })
    }
}

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl RetryOn ===

/// Retry conditions Istio accepts in `retryOn`, besides HTTP status codes.
pub const RETRY_ON_TOKENS: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// One `retryOn` token: a named condition or an HTTP status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RetryCondition {
    Named(&'static str),
    Status(u16),
}

/// `retryOn`: comma-separated, no spaces, each token a known condition or a status code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetryOn(Vec<RetryCondition>);

impl RetryOn {
    pub fn conditions(&self) -> &[RetryCondition] {
        &self.0
    }

    /// Envoy's `retry_on` (named conditions, plus `retriable-status-codes` when codes
    /// are listed) and `retriable_status_codes`, as istiod's ConvertPolicy builds them.
    pub fn to_envoy(&self) -> (String, Vec<u16>) {
        let mut names: Vec<&str> = Vec::new();
        let mut codes = Vec::new();
        for c in &self.0 {
            match c {
                RetryCondition::Named(n) => {
                    if !names.contains(n) {
                        names.push(n)
                    }
                }
                RetryCondition::Status(s) => codes.push(*s),
            }
        }
        if !codes.is_empty() && !names.contains(&"retriable-status-codes") {
            names.push("retriable-status-codes");
        }
        (names.join(","), codes)
    }
}

const RETRY_ON_ALLOWED: &str = "comma-separated, no spaces; each token one of 5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, or a defined HTTP status code such as 503";

/// The status codes Go's `net/http.StatusText` names: Istio accepts a retryOn code only
/// if it is one of these.
const KNOWN_STATUS_CODES: [u16; 62] = [
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];

/// A retryOn status-code token as Istio reads it (`strconv.Atoi`, so `+503` is allowed).
fn http_status_token(tok: &str) -> Option<u16> {
    let digits = tok.strip_prefix('+').unwrap_or(tok);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    KNOWN_STATUS_CODES.contains(&code).then_some(code)
}

impl FromStr for RetryOn {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() {
            return Err(bad(s, RETRY_ON_ALLOWED));
        }
        let mut out = Vec::new();
        for tok in s.split(',') {
            if let Some(n) = RETRY_ON_TOKENS.iter().find(|t| **t == tok) {
                out.push(RetryCondition::Named(n));
            } else if let Some(code) = http_status_token(tok) {
                out.push(RetryCondition::Status(code));
            } else {
                let why = if tok.trim() != tok {
                    format!("token {tok:?} has spaces; {RETRY_ON_ALLOWED}")
                } else {
                    format!("unknown token {tok:?}; {RETRY_ON_ALLOWED}")
                };
                return Err(bad(s, why));
            }
        }
        Ok(Self(out))
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match c {
                RetryCondition::Named(n) => f.write_str(n)?,
                RetryCondition::Status(s) => write!(f, "{s}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("2s", 2000),
            ("150ms", 150),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("1h", 3_600_000),
            ("1000us", 1),
        ];
        for (s, ms) in ok {
            let d: IstioDuration = s.parse().expect(s);
            assert_eq!(d.as_duration().as_millis(), ms, "{s}");
        }
        for s in [
            "", "2", "0.5ms", "1500us", "-1s", "2 s", "1x", "s", ".s", "1..2s",
        ] {
            assert!(s.parse::<IstioDuration>().is_err(), "{s} should fail");
        }
        assert_eq!(IstioDuration::parse_timeout("0s").expect("0s"), None);
        assert_eq!(
            IstioDuration::from_millis(1500).expect("ms").to_string(),
            "1500ms"
        );
        assert_eq!(
            IstioDuration::from_millis(2000).expect("ms").to_string(),
            "2s"
        );
    }

    #[test]
    fn percentages() {
        assert!(Percentage::new(0.0).is_ok());
        assert!(Percentage::new(0.0001).is_ok());
        assert!(Percentage::new(0.00009).is_err());
        assert!(Percentage::new(100.0).is_ok());
        assert!(Percentage::new(100.1).is_err());
        assert!(Percentage::new(f64::NAN).is_err());
        assert_eq!(Percentage::new(50.0).expect("p").per_million(), 500_000);
        assert_eq!(Percentage::new(0.0001).expect("p").per_million(), 1);
        assert_eq!("30%".parse::<Percentage>().expect("p").value(), 30.0);
    }

    #[test]
    fn statuses() {
        assert!(HttpStatus::new(200).is_ok());
        assert!(HttpStatus::new(599).is_ok());
        assert!(HttpStatus::new(600).is_err());
        assert!(HttpStatus::new(199).is_err());
        assert_eq!("UNAVAILABLE".parse::<GrpcStatus>().expect("g").code(), 14);
        assert!("unavailable".parse::<GrpcStatus>().is_err());
    }

    #[test]
    fn retry_on() {
        let r: RetryOn = "5xx,connect-failure,503".parse().expect("r");
        assert_eq!(
            r.to_envoy(),
            (
                "5xx,connect-failure,retriable-status-codes".to_string(),
                vec![503]
            )
        );
        assert_eq!(r.to_string(), "5xx,connect-failure,503");
        assert!("5xx, reset".parse::<RetryOn>().is_err());
        assert!("5xx,bogus".parse::<RetryOn>().is_err());
        assert!("".parse::<RetryOn>().is_err());
        assert!("5xx,".parse::<RetryOn>().is_err());
        assert!("700".parse::<RetryOn>().is_err());
        assert!(
            "5xx,599".parse::<RetryOn>().is_err(),
            "599 has no StatusText in Go"
        );
        assert!("420".parse::<RetryOn>().is_err());
        assert_eq!(
            "+503".parse::<RetryOn>().expect("+503").to_envoy().1,
            vec![503]
        );
    }
}
