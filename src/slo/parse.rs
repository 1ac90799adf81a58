//! The text form of an objective ([`ObjectiveParts`] → [`Objective`]) and its
//! description back ([`describe`]).

use serde_json::Value;

use super::format;
use super::{
    Cmp, LatencyBasis, Metric, Objective, ObjectiveError, ObjectiveParts, Over, PromQuery,
    StatusClass,
};

const METRICS: &str = "p50, p90, p95, p99, p999, max, success_rate, availability, error_rate, status_rate, throughput, recovery_time";

fn err(field: &'static str, message: impl Into<String>) -> ObjectiveError {
    ObjectiveError {
        field,
        message: message.into(),
    }
}

/// What the metric name says, before the other parts refine it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Latency(f64),
    SuccessRate,
    Availability,
    ErrorRate,
    StatusRate,
    Throughput,
    RecoveryTime,
}

impl Kind {
    fn is_rate(self) -> bool {
        matches!(
            self,
            Kind::SuccessRate | Kind::Availability | Kind::ErrorRate | Kind::StatusRate
        )
    }
}

pub(super) fn parse(parts: &ObjectiveParts<'_>) -> Result<Objective, ObjectiveError> {
    if let Some(q) = &parts.prometheus {
        return prometheus(parts, q);
    }
    let metric_name = parts.metric.trim();
    let kind = kind(metric_name)?;
    let text = parts.objective.trim();
    let (cmp, value, unit) = split_objective(text)?;
    let (threshold, relative) = threshold(kind, metric_name, value, unit)?;

    let basis = match (parts.latency.map(str::trim), kind) {
        (None, _) => LatencyBasis::Corrected,
        (Some(b), Kind::Latency(_)) => match b {
            "corrected" => LatencyBasis::Corrected,
            "service" => LatencyBasis::Service,
            other => {
                return Err(err(
                    "latency",
                    format!(
                        "unknown latency {other:?}: use corrected (from the intended start, the default) or service (from the actual send)"
                    ),
                ));
            }
        },
        (Some(_), _) => {
            return Err(err(
                "latency",
                format!(
                    "latency (corrected or service) applies to latency metrics (p50 … max), not {metric_name}"
                ),
            ));
        }
    };

    let statuses = if kind == Kind::StatusRate {
        if parts.statuses.is_empty() {
            return Err(err(
                "statuses",
                "status_rate needs statuses: codes (429), classes (\"5xx\") or \"error\" (no HTTP answer)",
            ));
        }
        let mut out = Vec::new();
        for v in parts.statuses {
            let s = status(v)?;
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    } else {
        if !parts.statuses.is_empty() {
            return Err(err(
                "statuses",
                format!("statuses apply to status_rate only, not {metric_name}"),
            ));
        }
        Vec::new()
    };

    let recovery = if kind == Kind::RecoveryTime {
        let slo = parts.slo.map(str::trim).unwrap_or("");
        if slo.is_empty() {
            return Err(err(
                "slo",
                "recovery_time needs slo: the name of the objective that must hold again",
            ));
        }
        if slo == parts.name.trim() {
            return Err(err(
                "slo",
                format!(
                    "recovery_time cannot wait for itself: slo must name another objective than {slo:?}"
                ),
            ));
        }
        let consecutive = parts.consecutive.unwrap_or(3);
        if consecutive == 0 {
            return Err(err(
                "consecutive",
                "consecutive must be at least 1 (intervals in a row that must hold)",
            ));
        }
        Some((slo.to_string(), consecutive))
    } else {
        if parts.slo.is_some() {
            return Err(err(
                "slo",
                format!("slo applies to recovery_time only, not {metric_name}"),
            ));
        }
        if parts.consecutive.is_some() {
            return Err(err(
                "consecutive",
                format!("consecutive applies to recovery_time only, not {metric_name}"),
            ));
        }
        None
    };

    let over = match parts.over.map(str::trim) {
        None | Some("phase") => {
            if parts.allow_bad.is_some() {
                return Err(err("allowBad", "allowBad applies with over: interval only"));
            }
            Over::Phase
        }
        Some("interval") => {
            if kind == Kind::RecoveryTime {
                return Err(err(
                    "over",
                    "recovery_time is judged once after each event, not over: interval",
                ));
            }
            Over::Interval {
                allow_bad: parts.allow_bad.unwrap_or(0),
            }
        }
        Some(other) => {
            return Err(err(
                "over",
                format!("unknown over {other:?}: use phase (the default) or interval"),
            ));
        }
    };

    let metric = match kind {
        Kind::Latency(quantile) => Metric::Latency { quantile, basis },
        Kind::SuccessRate => Metric::SuccessRate,
        Kind::Availability => Metric::Availability,
        Kind::ErrorRate => Metric::ErrorRate,
        Kind::StatusRate => Metric::StatusRate { statuses },
        Kind::Throughput => Metric::Throughput { relative },
        Kind::RecoveryTime => {
            let (slo, consecutive) = recovery.unwrap_or_default();
            Metric::RecoveryTime { slo, consecutive }
        }
    };
    Ok(Objective {
        name: parts.name.to_string(),
        metric,
        cmp,
        threshold,
        text: text.to_string(),
        over,
    })
}

// === prometheus ===

/// A [`Metric::Prometheus`] objective: a plain number (or a percentage of 1) against
/// the query's value at every point of a phase.
fn prometheus(parts: &ObjectiveParts<'_>, q: &PromQuery) -> Result<Objective, ObjectiveError> {
    if !parts.metric.trim().is_empty() {
        return Err(err(
            "metric",
            "an SLO reads either a metric of the load or a Prometheus query, not both: remove metric or prometheus",
        ));
    }
    let load_only = [
        ("latency", parts.latency.is_some()),
        ("statuses", !parts.statuses.is_empty()),
        ("slo", parts.slo.is_some()),
        ("consecutive", parts.consecutive.is_some()),
    ];
    if let Some((field, _)) = load_only.iter().find(|(_, given)| *given) {
        return Err(err(
            field,
            format!("{field} applies to metrics of the load, not to a Prometheus objective"),
        ));
    }
    let url = q.url.trim();
    check_url(url)?;
    let query = q.query.trim();
    if query.is_empty() {
        return Err(err(
            "prometheus.query",
            "the query is empty: give a PromQL expression with one value, e.g. sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))",
        ));
    }
    let text = parts.objective.trim();
    let (cmp, value, unit) = split_objective(text).map_err(|e| ObjectiveError {
        field: "prometheus.objective",
        message: e.message,
    })?;
    let threshold = match unit {
        "" => value,
        "%" => value / 100.0,
        other => {
            return Err(err(
                "prometheus.objective",
                format!(
                    "a PromQL value is a plain number: write e.g. \"< 1\", or \">= 99.5%\" for 0.995; not {other:?}"
                ),
            ));
        }
    };
    let over = match parts.over.map(str::trim) {
        None | Some("interval") => Over::Interval {
            allow_bad: parts.allow_bad.unwrap_or(0),
        },
        Some("phase") => {
            return Err(err(
                "over",
                "a Prometheus objective is judged at each 1 s point of a phase (over: interval, its default); use allowBad to let some points miss",
            ));
        }
        Some(other) => {
            return Err(err(
                "over",
                format!("unknown over {other:?}: a Prometheus objective is judged over: interval"),
            ));
        }
    };
    Ok(Objective {
        name: parts.name.to_string(),
        metric: Metric::Prometheus(PromQuery {
            url: url.trim_end_matches('/').to_string(),
            query: query.to_string(),
            url_at: q.url_at.clone(),
            query_at: q.query_at.clone(),
        }),
        cmp,
        threshold,
        text: text.to_string(),
        over,
    })
}

/// The base of Prometheus' HTTP API: `http://host:port[/prefix]`, nothing after.
fn check_url(url: &str) -> Result<(), ObjectiveError> {
    const HOW: &str = "give the base of Prometheus' HTTP API, e.g. http://127.0.0.1:9090 (or http://host/prometheus behind a prefix)";
    let bad = |why: String| err("prometheus.url", format!("{why}: {HOW}"));
    let u = url::Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL ({e})")))?;
    match u.scheme() {
        "http" => {}
        "https" => {
            return Err(err(
                "prometheus.url",
                format!(
                    "{url}: https is not supported yet: reach Prometheus over http (e.g. kubectl port-forward svc/prometheus 9090)"
                ),
            ));
        }
        other => return Err(bad(format!("{url}: the scheme {other:?} is not http"))),
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("{url} has no host")));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad(format!("{url} has a query or fragment")));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(format!(
            "{url} carries credentials, which meshdrill does not send"
        )));
    }
    if u.path().contains("/api/v1") {
        return Err(bad(format!("{url} already names the API (/api/v1)")));
    }
    Ok(())
}

fn kind(name: &str) -> Result<Kind, ObjectiveError> {
    Ok(match name {
        "max" => Kind::Latency(1.0),
        "p999" => Kind::Latency(0.999),
        "p9999" => Kind::Latency(0.9999),
        "success_rate" => Kind::SuccessRate,
        "availability" => Kind::Availability,
        "error_rate" => Kind::ErrorRate,
        "status_rate" => Kind::StatusRate,
        "throughput" => Kind::Throughput,
        "recovery_time" => Kind::RecoveryTime,
        _ => match name.strip_prefix('p').and_then(percentile) {
            Some(q) => Kind::Latency(q),
            None => {
                return Err(err(
                    "metric",
                    format!("unknown metric {name:?}: use {METRICS}"),
                ));
            }
        },
    })
}

/// `99.9` → 0.999: digits with at most one point, strictly between 0 and 100.
/// Computed from the digits (999 / 1000) so `p99.9` and `p999` are the same f64.
fn percentile(s: &str) -> Option<f64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 2 || frac.len() > 6 || !digits_ok(whole) {
        return None;
    }
    if s.contains('.') && (frac.is_empty() || !digits_ok(frac)) {
        return None;
    }
    let all: u64 = format!("{whole}{frac}").parse().ok()?;
    let scale = 10u64.pow(2 + frac.len() as u32);
    let q = all as f64 / scale as f64;
    (q > 0.0 && q < 1.0).then_some(q)
}

/// `>= 99.5%` → (Ge, 99.5, "%"), spaces allowed anywhere between the parts.
fn split_objective(text: &str) -> Result<(Cmp, f64, &str), ObjectiveError> {
    const HOW: &str = "write a comparison (<, <=, > or >=) and a value, e.g. >= 99.5% or < 500ms";
    if text.is_empty() {
        return Err(err("objective", format!("the objective is empty: {HOW}")));
    }
    let (cmp, rest) = if let Some(r) = text.strip_prefix("<=") {
        (Cmp::Le, r)
    } else if let Some(r) = text.strip_prefix(">=") {
        (Cmp::Ge, r)
    } else if let Some(r) = text.strip_prefix('<') {
        (Cmp::Lt, r)
    } else if let Some(r) = text.strip_prefix('>') {
        (Cmp::Gt, r)
    } else {
        return Err(err(
            "objective",
            format!("{text:?} has no comparison at its start: {HOW}"),
        ));
    };
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, unit) = rest.split_at(end);
    if rest.starts_with(['<', '>', '=']) {
        return Err(err(
            "objective",
            format!("{text:?}: one comparison only: use <, <=, > or >="),
        ));
    }
    if rest.starts_with('-') {
        return Err(err(
            "objective",
            format!("{text:?}: the value cannot be negative"),
        ));
    }
    let value = number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| err("objective", format!("{text:?} has no valid number: {HOW}")))?;
    Ok((cmp, value, unit.trim()))
}

/// The threshold in the metric's unit, and whether a throughput is relative.
fn threshold(
    kind: Kind,
    metric: &str,
    value: f64,
    unit: &str,
) -> Result<(f64, bool), ObjectiveError> {
    match kind {
        Kind::Latency(_) => duration_ms(metric, value, unit).map(|ms| (ms, false)),
        Kind::RecoveryTime => duration_ms(metric, value, unit).map(|ms| (ms / 1000.0, false)),
        _ if kind.is_rate() => match unit {
            "%" if value <= 100.0 => Ok((value / 100.0, false)),
            "%" => Err(err(
                "objective",
                format!(
                    "{}% is not a percentage of requests: use 0% to 100%",
                    format::number(value)
                ),
            )),
            "" => Err(err(
                "objective",
                format!(
                    "{metric} is a share of requests: write {}%",
                    format::number(value)
                ),
            )),
            other => Err(err(
                "objective",
                format!(
                    "{metric} is a share of requests: write a percentage such as 99.5%, not {other:?}"
                ),
            )),
        },
        _ => match unit {
            "%" => Ok((value / 100.0, true)),
            "" | "/s" | "rps" | "req/s" => Ok((value, false)),
            other => Err(err(
                "objective",
                format!(
                    "throughput is requests per second: write 150/s, or 95% for a share of the rate asked, not {other:?}"
                ),
            )),
        },
    }
}

fn duration_ms(metric: &str, value: f64, unit: &str) -> Result<f64, ObjectiveError> {
    let per = match unit {
        "ns" => 1e-6,
        "us" | "µs" | "μs" => 1e-3,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "%" => {
            return Err(err(
                "objective",
                format!(
                    "{metric} is a time: write a duration such as 500ms or 1.5s, not a percentage"
                ),
            ));
        }
        "" => {
            return Err(err(
                "objective",
                format!(
                    "{metric} is a time: give the unit, e.g. {}ms or {}s",
                    format::number(value),
                    format::number(value)
                ),
            ));
        }
        other => {
            return Err(err(
                "objective",
                format!("unknown time unit {other:?}: use us, ms, s or m (500ms, 1.5s, 250us, 1m)"),
            ));
        }
    };
    Ok(value * per)
}

fn status(v: &Value) -> Result<StatusClass, ObjectiveError> {
    let bad = || {
        err(
            "statuses",
            format!(
                "unknown status {v}: use a code from 100 to 599 (429), a class (\"2xx\" to \"5xx\") or \"error\" (no HTTP answer)"
            ),
        )
    };
    match v {
        Value::Number(n) => n
            .as_u64()
            .filter(|c| (100..=599).contains(c))
            .and_then(|c| u16::try_from(c).ok())
            .map(StatusClass::Code)
            .ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            if s == "error" {
                return Ok(StatusClass::Error);
            }
            if let Some(d) = s.strip_suffix("xx")
                && let [c @ b'1'..=b'5'] = d.as_bytes()
            {
                return Ok(StatusClass::Class(c - b'0'));
            }
            if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
                return s
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(StatusClass::Code)
                    .ok_or_else(bad);
            }
            Err(bad())
        }
        _ => Err(bad()),
    }
}

// === describe ===

/// `p99`, `p99.9` → the metric's name as written in the common forms.
pub(super) fn quantile_name(q: f64) -> String {
    if q == 1.0 {
        "max".to_string()
    } else if q == 0.999 {
        "p999".to_string()
    } else if q == 0.9999 {
        "p9999".to_string()
    } else {
        let s = format!("{:.4}", q * 100.0);
        format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

pub(super) fn status_name(s: StatusClass) -> String {
    match s {
        StatusClass::Code(c) => c.to_string(),
        StatusClass::Class(d) => format!("{d}xx"),
        StatusClass::Error => "error".to_string(),
    }
}

/// The metric part of a description: `p99`, `status_rate[5xx,error]`,
/// `recovery_time(availability, 3 in a row)`.
pub(super) fn metric_label(m: &Metric) -> String {
    match m {
        Metric::Latency { quantile, basis } => {
            let name = quantile_name(*quantile);
            match basis {
                LatencyBasis::Corrected => name,
                LatencyBasis::Service => format!("{name}(service)"),
            }
        }
        Metric::SuccessRate => "success_rate".to_string(),
        Metric::Availability => "availability".to_string(),
        Metric::ErrorRate => "error_rate".to_string(),
        Metric::StatusRate { statuses } => {
            let s: Vec<String> = statuses.iter().map(|s| status_name(*s)).collect();
            format!("status_rate[{}]", s.join(","))
        }
        Metric::Throughput { .. } => "throughput".to_string(),
        Metric::RecoveryTime { slo, consecutive } => {
            format!("recovery_time({slo}, {consecutive} in a row)")
        }
        Metric::Prometheus(q) => format!("prometheus({})", q.query),
    }
}

/// The threshold as written, without spaces (`500ms`, `99.5%`, `150/s`, `95% of
/// asked`); from the threshold itself when the text does not carry it.
pub(super) fn threshold_label(o: &Objective) -> String {
    let compact: String = o.text.chars().filter(|c| !c.is_whitespace()).collect();
    let written = compact
        .strip_prefix(o.cmp.symbol())
        .filter(|r| !r.is_empty() && !r.starts_with('='))
        .map(String::from);
    let rest = written.unwrap_or_else(|| match &o.metric {
        Metric::Latency { .. } => format!("{}ms", format::number(o.threshold)),
        Metric::RecoveryTime { .. } => format!("{}s", format::number(o.threshold)),
        Metric::Throughput { relative: true } => {
            format!("{}%", format::number(o.threshold * 100.0))
        }
        Metric::Throughput { relative: false } => format!("{}/s", format::number(o.threshold)),
        Metric::Prometheus(_) => format::number(o.threshold),
        _ => format!("{}%", format::number(o.threshold * 100.0)),
    });
    match o.metric {
        Metric::Throughput { relative: true } => format!("{rest} of asked"),
        Metric::Throughput { relative: false }
            if rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            format!("{rest}/s")
        }
        _ => rest,
    }
}

pub(super) fn describe(o: &Objective) -> String {
    let mut out = format!(
        "{} {} {}",
        metric_label(&o.metric),
        o.cmp.symbol(),
        threshold_label(o)
    );
    match o.over {
        Over::Phase => {}
        Over::Interval { allow_bad: 0 } => out.push_str(" in every interval"),
        Over::Interval { allow_bad: 1 } => out.push_str(" in all intervals but 1"),
        Over::Interval { allow_bad } => {
            out.push_str(&format!(" in all intervals but {allow_bad}"));
        }
    }
    out
}
