//! Typed fault, retry and timeout specs, and how each one rewrites a route.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::types::{GrpcStatus, HttpStatus, IstioDuration, Percentage, RetryOn};

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct DelaySpec {
    pub fixed: IstioDuration,
    pub percentage: Percentage,
}

/// What an abort answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortCode {
    Http(HttpStatus),
    Grpc(GrpcStatus),
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortSpec {
    pub code: AbortCode,
    pub percentage: Percentage,
}

impl AbortSpec {
    /// Partial network failure: a share of requests fail (default 50% with 503).
    pub fn partial(percentage: Option<Percentage>, status: Option<HttpStatus>) -> Self {
        Self {
            code: AbortCode::Http(status.unwrap_or(HttpStatus::SERVICE_UNAVAILABLE)),
            percentage: percentage.unwrap_or(Percentage::FIFTY),
        }
    }
    /// Total network failure: every request fails (503 unless told otherwise).
    pub fn total(status: Option<HttpStatus>) -> Self {
        Self {
            code: AbortCode::Http(status.unwrap_or(HttpStatus::SERVICE_UNAVAILABLE)),
            percentage: Percentage::HUNDRED,
        }
    }
}

/// `retries`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    pub attempts: u32,
    pub per_try_timeout: Option<IstioDuration>,
    pub retry_on: Option<RetryOn>,
    pub retry_remote_localities: Option<bool>,
}

/// One kind of fault under a route's `fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// `fault.delay`.
    Delay,
    /// `fault.abort`.
    Abort,
}

impl FaultKind {
    /// The key under `fault`: `delay` or `abort`.
    pub fn key(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Abort => "abort",
        }
    }

    /// Sets `fault.<kind>` of `route` back to what `before` — the route's whole `fault`
    /// before meshdrill's first change, `None` when it had none — held (absent if it
    /// held none), keeping the other kind as it is now. When the fault then equals
    /// `before` (an empty fault counting as equal to an absent or non-mapping one), it
    /// is restored exactly — removed when it was absent — and this returns `true`.
    pub fn restore(self, route: &mut Map<String, Value>, before: Option<&Value>) -> bool {
        let mut fault = match route.get("fault") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        match before.and_then(|b| b.get(self.key())) {
            Some(v) => {
                fault.insert(self.key().into(), v.clone());
            }
            None => {
                fault.shift_remove(self.key());
            }
        }
        let empty = Map::new();
        let before_map = before.and_then(Value::as_object).unwrap_or(&empty);
        if &fault == before_map {
            match before {
                None => {
                    route.shift_remove("fault");
                }
                Some(b) => {
                    route.insert("fault".into(), b.clone());
                }
            }
            true
        } else {
            route.insert("fault".into(), Value::Object(fault));
            false
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One change meshdrill makes to the selected routes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sets `fault.delay`, keeping any `fault.abort`.
    Delay(DelaySpec),
    /// Sets `fault.abort`, keeping any `fault.delay`.
    Abort(AbortSpec),
    /// Sets `retries` and, optionally, the route `timeout`.
    Retries {
        retries: RetrySpec,
        timeout: Option<IstioDuration>,
    },
    /// Sets the route `timeout` only.
    Timeout(IstioDuration),
    /// Undoes meshdrill's own fault of this kind: on each selected route whose drill
    /// record owns the `fault`, sets `fault.<kind>` back to what it was before
    /// meshdrill's first change, keeping the other kind. Routes meshdrill never
    /// changed are left alone, so a fault that was there before the drill survives.
    /// Planned by [`crate::istio::plan_change`], which holds the record.
    RemoveFault(FaultKind),
}

impl Change {
    /// The route fields this change sets (what the drill record owns).
    pub fn owned_fields(&self) -> &'static [&'static str] {
        match self {
            Change::Delay(_) | Change::Abort(_) | Change::RemoveFault(_) => &["fault"],
            Change::Retries { timeout: None, .. } => &["retries"],
            Change::Retries { .. } => &["retries", "timeout"],
            Change::Timeout(_) => &["timeout"],
        }
    }

    /// Rewrites one HTTP route (a JSON object) in place.
    ///
    /// [`Change::RemoveFault`] changes nothing here: what to restore lives in the drill
    /// record, which only [`crate::istio::plan_change`] reads (see
    /// [`FaultKind::restore`]); without a record meshdrill added no fault to remove.
    pub fn apply_to_route(&self, route: &mut Map<String, Value>) {
        match self {
            Change::Delay(d) => {
                fault_mut(route).insert(
                    "delay".into(),
                    json!({"fixedDelay": d.fixed.to_string(), "percentage": {"value": d.percentage.to_json()}}),
                );
            }
            Change::Abort(a) => {
                let mut abort = Map::new();
                match a.code {
                    AbortCode::Http(s) => abort.insert("httpStatus".into(), json!(s.code())),
                    AbortCode::Grpc(g) => abort.insert("grpcStatus".into(), json!(g.name())),
                };
                abort.insert(
                    "percentage".into(),
                    json!({"value": a.percentage.to_json()}),
                );
                fault_mut(route).insert("abort".into(), Value::Object(abort));
            }
            Change::Retries { retries, timeout } => {
                let mut r = Map::new();
                r.insert("attempts".into(), json!(retries.attempts));
                if let Some(p) = retries.per_try_timeout {
                    r.insert("perTryTimeout".into(), json!(p.to_string()));
                }
                if let Some(on) = &retries.retry_on {
                    r.insert("retryOn".into(), json!(on.to_string()));
                }
                if let Some(b) = retries.retry_remote_localities {
                    r.insert("retryRemoteLocalities".into(), json!(b));
                }
                route.insert("retries".into(), Value::Object(r));
                if let Some(t) = timeout {
                    route.insert("timeout".into(), json!(t.to_string()));
                }
            }
            Change::Timeout(t) => {
                route.insert("timeout".into(), json!(t.to_string()));
            }
            Change::RemoveFault(_) => {}
        }
    }
}

fn fault_mut(route: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = route
        .entry("fault")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("fault was just made an object"),
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Delay(d) => write!(f, "delay {} on {}", d.fixed, d.percentage),
            Change::Abort(a) => {
                let code = match a.code {
                    AbortCode::Http(s) => format!("HTTP {s}"),
                    AbortCode::Grpc(g) => format!("gRPC {g}"),
                };
                write!(f, "abort {code} on {}", a.percentage)
            }
            Change::Retries { retries, timeout } => {
                write!(f, "retries attempts={}", retries.attempts)?;
                if let Some(p) = retries.per_try_timeout {
                    write!(f, " perTryTimeout={p}")?;
                }
                if let Some(on) = &retries.retry_on {
                    write!(f, " retryOn={on}")?;
                }
                if let Some(t) = timeout {
                    write!(f, " timeout={t}")?;
                }
                Ok(())
            }
            Change::Timeout(t) => write!(f, "timeout {t}"),
            Change::RemoveFault(k) => write!(f, "remove {k}"),
        }
    }
}

// === Route selection ===

/// Which HTTP routes of a VirtualService a change applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RouteSelector {
    /// Every route in `spec.http`.
    #[default]
    All,
    /// The route with this `name`.
    Name(String),
    /// The route at this 0-based index.
    Index(usize),
    /// Routes with a destination to this host (short name or FQDN), and subset if given.
    Destination {
        host: String,
        subset: Option<String>,
    },
    /// Routes with a destination matching any of these `(host, subset)` pairs: the
    /// host as for [`RouteSelector::Destination`], the subset equal when given, any
    /// subset when `None`. An empty list matches no route.
    Destinations(Vec<(String, Option<String>)>),
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSelector::All => f.write_str("all HTTP routes"),
            RouteSelector::Name(n) => write!(f, "route named {n:?}"),
            RouteSelector::Index(i) => write!(f, "route #{i}"),
            RouteSelector::Destination { host, subset: None } => {
                write!(f, "routes to host {host:?}")
            }
            RouteSelector::Destination {
                host,
                subset: Some(s),
            } => write!(f, "routes to host {host:?} subset {s:?}"),
            RouteSelector::Destinations(ds) if ds.is_empty() => {
                f.write_str("routes to (no destinations given)")
            }
            RouteSelector::Destinations(ds) => {
                f.write_str("routes to ")?;
                for (n, (host, subset)) in ds.iter().enumerate() {
                    if n > 0 {
                        f.write_str(" or ")?;
                    }
                    match subset {
                        Some(s) => write!(f, "{host}/{s}")?,
                        None => f.write_str(host)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A short host name (`reviews`) matches its FQDN forms (`reviews.ns.svc.cluster.local`).
pub fn host_matches(wanted: &str, host: &str) -> bool {
    wanted == host
        || host
            .strip_prefix(wanted)
            .is_some_and(|r| r.starts_with('.'))
        || wanted
            .strip_prefix(host)
            .is_some_and(|r| r.starts_with('.'))
}

/// Istio's host.Name.SubsetOf (pkg/config/host/name.go): every name `a` matches is
/// matched by `b` (either may be a wildcard, `*` or `*.suffix`).
pub fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

impl RouteSelector {
    /// Indices of the matching routes; empty when none match.
    pub fn select(&self, http: &[Value]) -> Vec<usize> {
        http.iter()
            .enumerate()
            .filter(|(i, r)| self.matches(*i, r))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether a destination `(host, subset)` is one this selector names: always for
    /// the selectors that pick whole routes (all, name, index).
    pub fn wants_destination(&self, host: &str, subset: Option<&str>) -> bool {
        match self {
            RouteSelector::All | RouteSelector::Name(_) | RouteSelector::Index(_) => true,
            RouteSelector::Destination { host: h, subset: s } => {
                destination_matches(h, s.as_deref(), host, subset)
            }
            RouteSelector::Destinations(wanted) => wanted
                .iter()
                .any(|(h, s)| destination_matches(h, s.as_deref(), host, subset)),
        }
    }

    fn matches(&self, index: usize, route: &Value) -> bool {
        match self {
            RouteSelector::All => true,
            RouteSelector::Name(n) => route.get("name").and_then(Value::as_str) == Some(n),
            RouteSelector::Index(i) => *i == index,
            RouteSelector::Destination { host, subset } => route_destinations(route)
                .iter()
                .any(|&(h, s)| destination_matches(host, subset.as_deref(), h, s)),
            RouteSelector::Destinations(wanted) => {
                route_destinations(route).iter().any(|&(h, s)| {
                    wanted
                        .iter()
                        .any(|(host, subset)| destination_matches(host, subset.as_deref(), h, s))
                })
            }
        }
    }
}

/// A route destination `(host, subset)` matches a wanted host (short name or FQDN) and,
/// when given, subset.
fn destination_matches(
    host: &str,
    subset: Option<&str>,
    dest_host: &str,
    dest_subset: Option<&str>,
) -> bool {
    host_matches(host, dest_host) && subset.is_none_or(|s| Some(s) == dest_subset)
}

/// `(host, subset)` of each destination of a route.
pub fn route_destinations(route: &Value) -> Vec<(&str, Option<&str>)> {
    route
        .get("route")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| {
                    let dest = d.get("destination")?;
                    Some((
                        dest.get("host")?.as_str()?,
                        dest.get("subset").and_then(Value::as_str),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The traffic share of one entry of a route's `route` list, as Istio translates it:
/// a route's only destination takes all traffic whatever its `weight` (even 0: istiod's
/// applyHTTPRouteDestination reads no weight when `len(in.Route) == 1`, route.go,
/// Istio 1.26); of several, each its `weight`, 0 when omitted.
pub fn destination_weight(d: &Value, single: bool) -> u64 {
    if single {
        return 100;
    }
    d.get("weight").and_then(Value::as_u64).unwrap_or(0)
}

/// `host/subset`, or `host` without a subset.
pub fn destination_label(host: &str, subset: Option<&str>) -> String {
    match subset {
        Some(s) => format!("{host}/{s}"),
        None => host.to_string(),
    }
}

/// One line per route: `#0 name=reviews-v2 -> reviews/v2`, for "no such route" errors.
pub fn describe_routes(http: &[Value]) -> String {
    let mut out = String::new();
    for (i, r) in http.iter().enumerate() {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("-");
        let dests: Vec<String> = route_destinations(r)
            .iter()
            .map(|&(h, s)| destination_label(h, s))
            .collect();
        out.push_str(&format!(
            "  #{i} name={name} -> {}\n",
            if dests.is_empty() {
                "(no destinations)".to_string()
            } else {
                dests.join(", ")
            }
        ));
    }
    out
}
