//! The steps of `spec.method` and `spec.rollbacks`: the dispatch on the step key,
//! VirtualService and route selection, changes, and replica steps. Judged phases
//! (hold, flood, search) are in [`super::phases`].

use serde_json::Value;

use super::values::{Obj, child, unknown_key};
use super::{Parser, R, is_dns_label};
use crate::istio::manifest::json_type;
use crate::istio::{
    AbortCode, AbortSpec, Change, DelaySpec, GrpcStatus, HttpStatus, Percentage, RetryOn,
    RetrySpec, RouteSelector,
};
use crate::scenario::model::{Step, StepKind, VsRef};

/// Every step kind, in the order messages list them.
pub(super) const STEP_KINDS: [&str; 10] = [
    "fault", "retries", "timeout", "clear", "kill", "restart", "hold", "pause", "flood", "search",
];
/// The step kinds `spec.rollbacks` takes: ones that undo or wait. A change step there
/// would be a new drill (recorded, expiring) right after meshdrill undid its own.
pub(super) const ROLLBACK_KINDS: [&str; 3] = ["clear", "restart", "pause"];
pub(super) const SELECTOR_KEYS: [&str; 3] = ["route", "routeIndex", "destination"];
pub(super) const FAULT_KEYS: [&str; 8] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "abort",
    "delay",
    "network",
];
pub(super) const RETRIES_KEYS: [&str; 10] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "attempts",
    "perTryTimeout",
    "retryOn",
    "retryRemoteLocalities",
    "timeout",
];
pub(super) const TIMEOUT_KEYS: [&str; 6] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "timeout",
];
pub(super) const VS_ONLY_KEYS: [&str; 2] = ["virtualService", "namespace"];
pub(super) const ABORT_KEYS: [&str; 3] = ["httpStatus", "grpcStatus", "percentage"];
pub(super) const DELAY_KEYS: [&str; 2] = ["fixedDelay", "percentage"];
pub(super) const NETWORK_KEYS: [&str; 3] = ["partial", "total", "httpStatus"];
pub(super) const KILL_KEYS: [&str; 4] = ["service", "selector", "replica", "count"];
pub(super) const RESTART_KEYS: [&str; 2] = ["service", "replica"];

/// `go-demo-8`, or `ns/go-demo-8` with a namespace.
pub(super) fn vs_text(vs: &VsRef) -> String {
    match &vs.namespace {
        Some(ns) => format!("{ns}/{}", vs.name),
        None => vs.name.clone(),
    }
}

/// ` (route #0)`, or nothing for every route.
fn selector_text(s: &RouteSelector) -> String {
    match s {
        RouteSelector::All => String::new(),
        other => format!(" ({other})"),
    }
}

impl Parser<'_> {
    /// One step of the method (`rollback`: of `spec.rollbacks`).
    pub(super) fn step(&self, p: &str, v: &Value, index: usize, rollback: bool) -> R<Step> {
        let kinds: &[&str] = if rollback {
            &ROLLBACK_KINDS
        } else {
            &STEP_KINDS
        };
        let list = kinds.join(", ");
        let Some(m) = v.as_object() else {
            return Err(self.err(
                p,
                format!(
                    "expected a step: a mapping with one of {list} (e.g. {{hold: 10s}}), found {}",
                    json_type(v)
                ),
            ));
        };
        for k in m.keys() {
            if k == "name" || kinds.contains(&k.as_str()) {
                continue;
            }
            let message = if STEP_KINDS.contains(&k.as_str()) {
                format!("a rollback step is one of {list}; {k} is not")
            } else {
                let mut allowed = vec!["name"];
                allowed.extend_from_slice(kinds);
                unknown_key(k, &allowed)
            };
            return Err(self.err(&child(p, k), message));
        }
        let present: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| m.contains_key(*k))
            .collect();
        let kind = match present.as_slice() {
            [] => {
                return Err(self.err(
                    p,
                    format!("a step needs one of {list} (e.g. {{hold: 10s}})"),
                ));
            }
            [k] => *k,
            [a, b, ..] => {
                return Err(self.err(
                    &child(p, b),
                    format!(
                        "a step does one thing, and this one has {a} and {b}: make them two steps"
                    ),
                ));
            }
        };
        let o = Obj {
            p: p.to_string(),
            m,
        };
        let name = self
            .opt_str(&o, "name", "a name for the step, e.g. \"total failure\"")?
            .map(String::from);
        let sp = child(p, kind);
        let Some(sv) = m.get(kind) else {
            return Err(self.err(&sp, format!("{kind} is missing")));
        };
        let (kind, label) = match kind {
            "fault" => self.fault(&sp, sv)?,
            "retries" => self.retries(&sp, sv)?,
            "timeout" => self.timeout(&sp, sv)?,
            "clear" => self.clear(&sp, sv)?,
            "kill" => self.kill(&sp, sv)?,
            "restart" => self.restart(&sp, sv)?,
            "hold" => self.hold(&sp, sv)?,
            "pause" => {
                let (d, text) = self.duration(&sp, sv)?;
                (StepKind::Pause(d), format!("pause {text}"))
            }
            "flood" => self.flood(&sp, sv)?,
            _ => self.search(&sp, sv)?,
        };
        Ok(Step {
            index,
            label: name.unwrap_or(label),
            at: self.at(p),
            kind,
        })
    }

    // === VirtualServices and routes ===

    pub(super) fn vs_ref(&self, o: &Obj<'_>) -> R<VsRef> {
        let name = self.req_str(
            o,
            "virtualService",
            "the name of the VirtualService to change",
        )?;
        if !is_dns_subdomain(name) {
            return Err(self.err(
                &o.at("virtualService"),
                format!(
                    "invalid VirtualService name {name:?}: lowercase letters, digits, '-' and '.'"
                ),
            ));
        }
        let namespace = self.opt_str(o, "namespace", "the VirtualService's namespace")?;
        if let Some(ns) = namespace
            && !is_dns_label(ns)
        {
            return Err(self.err(
                &o.at("namespace"),
                format!("invalid namespace {ns:?}: a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        Ok(VsRef {
            name: name.to_string(),
            namespace: namespace.map(String::from),
        })
    }

    /// `clear: name`, `upstream: name`, or `{virtualService, namespace}`.
    pub(super) fn vs_short(&self, p: &str, v: &Value) -> R<VsRef> {
        if let Value::String(_) = v {
            let name = self.string(p, v, "the name of a VirtualService")?;
            if !is_dns_subdomain(name) {
                return Err(self.err(
                    p,
                    format!("invalid VirtualService name {name:?}: lowercase letters, digits, '-' and '.'"),
                ));
            }
            return Ok(VsRef {
                name: name.to_string(),
                namespace: None,
            });
        }
        if let Some(m) = v.as_object()
            && let Some(k) = m.keys().find(|k| SELECTOR_KEYS.contains(&k.as_str()))
        {
            return Err(self.err(
                &child(p, k),
                "this names a whole VirtualService; it takes no route, routeIndex or destination",
            ));
        }
        let o = self.mapping(
            p,
            v,
            &VS_ONLY_KEYS,
            "go-demo-8 or {virtualService: go-demo-8, namespace: shop}",
        )?;
        self.vs_ref(&o)
    }

    pub(super) fn selector(&self, o: &Obj<'_>) -> R<RouteSelector> {
        let Some((key, p, v)) = self.pick(o, &SELECTOR_KEYS, false, "")? else {
            return Ok(RouteSelector::All);
        };
        Ok(match key {
            "route" => {
                RouteSelector::Name(self.string(&p, v, "the name of an HTTP route")?.to_string())
            }
            "routeIndex" => {
                RouteSelector::Index(self.integer(&p, v, 0, u64::from(u32::MAX))? as usize)
            }
            _ => {
                let d = self.string(&p, v, "a destination host, HOST or HOST/SUBSET")?;
                let (host, subset) = match d.split_once('/') {
                    Some((h, s)) => (h, Some(s)),
                    None => (d, None),
                };
                if host.is_empty() || subset.is_some_and(|s| s.is_empty() || s.contains('/')) {
                    return Err(self.err(
                        &p,
                        format!("invalid destination {d:?}: HOST or HOST/SUBSET, e.g. reviews or reviews/v2"),
                    ));
                }
                RouteSelector::Destination {
                    host: host.to_string(),
                    subset: subset.map(String::from),
                }
            }
        })
    }

    fn http_status(&self, p: &str, v: &Value) -> R<HttpStatus> {
        let code = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(code) = code else {
            return Err(self.err(
                p,
                format!(
                    "expected an HTTP status code such as 503, found {}",
                    json_type(v)
                ),
            ));
        };
        HttpStatus::new(code).map_err(|e| self.err(p, e.to_string()))
    }

    fn grpc_status(&self, p: &str, v: &Value) -> R<GrpcStatus> {
        let s = self.string(p, v, "a gRPC status name such as UNAVAILABLE")?;
        s.parse::<GrpcStatus>()
            .map_err(|e| self.err(p, e.to_string()))
    }

    pub(super) fn abort_code(&self, o: &Obj<'_>) -> R<AbortCode> {
        match self.pick(
            o,
            &["httpStatus", "grpcStatus"],
            true,
            "what aborted requests get, e.g. httpStatus: 503",
        )? {
            Some(("grpcStatus", p, v)) => Ok(AbortCode::Grpc(self.grpc_status(&p, v)?)),
            Some((_, p, v)) => Ok(AbortCode::Http(self.http_status(&p, v)?)),
            None => Err(self.err(&o.p, "give httpStatus or grpcStatus")),
        }
    }

    fn opt_percentage(&self, o: &Obj<'_>, key: &str) -> R<Option<Percentage>> {
        o.get(key).map(|(p, v)| self.percentage(&p, v)).transpose()
    }

    // === Changes ===

    fn change_step(
        &self,
        vs: VsRef,
        selector: RouteSelector,
        change: Change,
        kind: &str,
    ) -> (StepKind, String) {
        let text = change.to_string();
        let what = text
            .strip_prefix(&format!("{kind} "))
            .unwrap_or(&text)
            .to_string();
        let label = format!(
            "{kind} on {}{}: {what}",
            vs_text(&vs),
            selector_text(&selector)
        );
        (
            StepKind::Change {
                vs,
                selector,
                change,
            },
            label,
        )
    }

    fn fault(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &FAULT_KEYS,
            "{virtualService: go-demo-8, abort: {httpStatus: 500, percentage: 50}}",
        )?;
        let vs = self.vs_ref(&o)?;
        let selector = self.selector(&o)?;
        let Some((key, fp, fv)) = self.pick(
            &o,
            &["abort", "delay", "network"],
            true,
            "the fault to inject",
        )?
        else {
            return Err(self.err(&o.p, "give abort, delay or network"));
        };
        let change = match key {
            "abort" => {
                let a = self.mapping(&fp, fv, &ABORT_KEYS, "{httpStatus: 500, percentage: 50}")?;
                Change::Abort(AbortSpec {
                    code: self.abort_code(&a)?,
                    percentage: self
                        .opt_percentage(&a, "percentage")?
                        .unwrap_or(Percentage::HUNDRED),
                })
            }
            "delay" => {
                let d = self.mapping(&fp, fv, &DELAY_KEYS, "{fixedDelay: 2s, percentage: 50}")?;
                let (dp, dv) =
                    self.req(&d, "fixedDelay", "how long delayed requests wait, e.g. 2s")?;
                Change::Delay(DelaySpec {
                    fixed: self.istio_duration(&dp, dv)?,
                    percentage: self
                        .opt_percentage(&d, "percentage")?
                        .unwrap_or(Percentage::HUNDRED),
                })
            }
            _ => {
                let n = self.mapping(&fp, fv, &NETWORK_KEYS, "{partial: 30} or {total: true}")?;
                let status = n
                    .get("httpStatus")
                    .map(|(p, v)| self.http_status(&p, v))
                    .transpose()?;
                match self.pick(
                    &n,
                    &["partial", "total"],
                    true,
                    "partial: 30 (a share of requests fail) or total: true",
                )? {
                    Some(("partial", _, Value::Null)) => {
                        Change::Abort(AbortSpec::partial(None, status))
                    }
                    Some(("partial", pp, pv)) => {
                        Change::Abort(AbortSpec::partial(Some(self.percentage(&pp, pv)?), status))
                    }
                    Some((_, tp, tv)) => {
                        if !self.boolean(&tp, tv)? {
                            return Err(self.err(
                                &tp,
                                "total: true fails every request; for a share of them write partial: 30",
                            ));
                        }
                        Change::Abort(AbortSpec::total(status))
                    }
                    None => return Err(self.err(&n.p, "give partial or total")),
                }
            }
        };
        Ok(self.change_step(vs, selector, change, "fault"))
    }

    fn retries(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &RETRIES_KEYS,
            "{virtualService: repeater, attempts: 3, perTryTimeout: 2s, retryOn: 5xx}",
        )?;
        let vs = self.vs_ref(&o)?;
        let selector = self.selector(&o)?;
        let (ap, av) = self.req(
            &o,
            "attempts",
            "retries per request (0 disables retries), e.g. 3",
        )?;
        let attempts = self.integer(&ap, av, 0, i32::MAX as u64)? as u32;
        let per_try_timeout = o
            .get("perTryTimeout")
            .map(|(p, v)| self.istio_duration(&p, v))
            .transpose()?;
        let retry_on = match o.get("retryOn") {
            None => None,
            Some((p, v)) => {
                let s = self.string(&p, v, "retry conditions such as \"5xx,connect-failure\"")?;
                Some(
                    s.parse::<RetryOn>()
                        .map_err(|e| self.err(&p, e.to_string()))?,
                )
            }
        };
        let retry_remote_localities = self.opt_bool(&o, "retryRemoteLocalities")?;
        if attempts == 0
            && let Some(k) = ["perTryTimeout", "retryOn", "retryRemoteLocalities"]
                .into_iter()
                .find(|k| o.has(k))
        {
            return Err(self.err(
                &o.at(k),
                "attempts: 0 disables retries; perTryTimeout, retryOn and retryRemoteLocalities need attempts > 0 (Istio rejects them together)",
            ));
        }
        let timeout = o
            .get("timeout")
            .map(|(p, v)| self.istio_duration(&p, v))
            .transpose()?;
        let change = Change::Retries {
            retries: RetrySpec {
                attempts,
                per_try_timeout,
                retry_on,
                retry_remote_localities,
            },
            timeout,
        };
        Ok(self.change_step(vs, selector, change, "retries"))
    }

    fn timeout(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &TIMEOUT_KEYS,
            "{virtualService: repeater, timeout: 2s}",
        )?;
        let vs = self.vs_ref(&o)?;
        let selector = self.selector(&o)?;
        let (tp, tv) = self.req(
            &o,
            "timeout",
            "the whole-request timeout of the routes, e.g. 2s",
        )?;
        let change = Change::Timeout(self.istio_duration(&tp, tv)?);
        Ok(self.change_step(vs, selector, change, "timeout"))
    }

    fn clear(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let vs = self.vs_short(p, v)?;
        let label = format!("clear {}", vs_text(&vs));
        Ok((StepKind::Clear { vs }, label))
    }

    // === Replicas ===

    fn kill(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &KILL_KEYS,
            "{service: go-demo-8, replica: 0} or {selector: \"app=reviews\", count: 1}",
        )?;
        let picked = self.pick(
            &o,
            &["service", "selector"],
            true,
            "service (a mesh service) or selector (pods on a cluster)",
        )?;
        let (service, selector) = match picked {
            Some(("service", sp, sv)) => (Some(self.service(&sp, sv)?), None),
            Some((_, sp, sv)) => {
                let s = self.string(&sp, sv, "a label selector such as app=reviews")?;
                (None, Some(s.to_string()))
            }
            None => return Err(self.err(&o.p, "give service or selector")),
        };
        let replica = match o.get("replica") {
            None => None,
            Some((rp, _)) if selector.is_some() => {
                return Err(self.err(
                    &rp,
                    "replica picks one replica of a mesh service: use it with service; with selector give count",
                ));
            }
            Some((rp, rv)) => Some(self.integer(&rp, rv, 0, 63)? as usize),
        };
        let count = match o.get("count") {
            None => None,
            Some((cp, _)) if replica.is_some() => {
                return Err(self.err(&cp, "replica and count exclude each other: kill one named replica, or count of them"));
            }
            Some((cp, cv)) => Some(self.integer(&cp, cv, 1, u64::from(u32::MAX))? as u32),
        };
        let label = match (&service, &selector, replica, count) {
            (Some(s), _, Some(r), _) => format!("kill {s} replica {r}"),
            (Some(s), _, None, Some(n)) => format!("kill {n} of {s}"),
            (Some(s), _, None, None) => format!("kill {s} (every replica)"),
            (None, Some(sel), _, n) => {
                let n = n.unwrap_or(1);
                format!("kill {n} pod{} {sel}", if n == 1 { "" } else { "s" })
            }
            (None, None, _, _) => "kill".to_string(),
        };
        Ok((
            StepKind::Kill {
                service,
                selector,
                replica,
                count,
            },
            label,
        ))
    }

    fn service(&self, p: &str, v: &Value) -> R<String> {
        let s = self.string(p, v, "the name of a mesh service, e.g. go-demo-8")?;
        if !is_dns_label(s) {
            return Err(self.err(
                p,
                format!("invalid service name {s:?}: a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        Ok(s.to_string())
    }

    fn restart(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(p, v, &RESTART_KEYS, "{service: go-demo-8, replica: 0}")?;
        let (sp, sv) = self.req(&o, "service", "the mesh service whose replicas start again")?;
        let service = self.service(&sp, sv)?;
        let replica = self.opt_integer(&o, "replica", 0, 63)?.map(|n| n as usize);
        let label = match replica {
            Some(r) => format!("restart {service} replica {r}"),
            None => format!("restart {service}"),
        };
        Ok((StepKind::Restart { service, replica }, label))
    }
}

/// A Kubernetes object name: a DNS-1123 subdomain.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}
