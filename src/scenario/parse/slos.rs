//! SLO lists (`spec.slos`, a flood's) and stop conditions, through
//! [`Objective::parse`] so that units stay those of [`crate::slo`].

use serde_json::Value;

use super::values::{Obj, camel, child, item};
use super::{PROM_KEYS, Parser, R, SLO_KEYS, STOP_KEYS};
use crate::istio::manifest::json_type;
use crate::istio::validate::dotted;
use crate::scenario::model::StopCondition;
use crate::slo::{Cmp, Metric, Objective, ObjectiveParts, PromQuery};

impl Parser<'_> {
    /// A list of SLOs (`spec.slos` or a flood's): names unique, recovery times naming
    /// an SLO of the same list. `relative_ok`: the load they judge has a rate
    /// (`load` names it in messages).
    pub(super) fn slos<'v>(
        &self,
        p: &str,
        v: &'v Value,
        relative_ok: bool,
        load: &str,
    ) -> R<(Vec<Objective>, Vec<Obj<'v>>)> {
        let list = self.list(
            p,
            v,
            "[{name: availability, metric: availability, objective: \">= 99%\"}]",
        )?;
        let mut out: Vec<Objective> = Vec::new();
        let mut raw = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let ip = item(p, i);
            let o = self.mapping(
                &ip,
                v,
                &SLO_KEYS,
                "{name: availability, metric: availability, objective: \">= 99%\"}",
            )?;
            let parts = self.objective_parts(&o)?;
            if let Some(j) = out.iter().position(|x| x.name == parts.name) {
                return Err(self.err(
                    &o.at("name"),
                    format!(
                        "the name {:?} is already used by {}: SLO names must be unique",
                        parts.name,
                        dotted(&item(p, j))
                    ),
                ));
            }
            let obj = Objective::parse(&parts).map_err(|e| {
                // `prometheus.objective`: a field below the SLO's own.
                let at = e
                    .field
                    .split('.')
                    .filter(|k| !k.is_empty())
                    .fold(o.p.clone(), |p, k| child(&p, &camel(k)));
                self.err(&at, e.message)
            })?;
            if matches!(obj.metric, Metric::Throughput { relative: true }) && !relative_ok {
                return Err(self.err(
                    &o.at("objective"),
                    format!("{:?} is relative to the rate asked for, and {load} has no rate (closed loop): give {load}.rate, or write the objective in requests/s (e.g. \">= 150/s\")", obj.text),
                ));
            }
            out.push(obj);
            raw.push(o);
        }
        for (o, obj) in raw.iter().zip(&out) {
            if let Metric::RecoveryTime { slo, .. } = &obj.metric {
                let others: Vec<&str> = out
                    .iter()
                    .filter(|x| !matches!(x.metric, Metric::RecoveryTime { .. }))
                    .map(|x| x.name.as_str())
                    .collect();
                if !others.contains(&slo.as_str()) {
                    let list = if others.is_empty() {
                        "(none)".to_string()
                    } else {
                        others.join(", ")
                    };
                    return Err(self.err(
                        &o.at("slo"),
                        format!("recovery_time measures until another SLO of this list holds again; {slo:?} is not one (SLOs: {list})"),
                    ));
                }
                if out
                    .iter()
                    .any(|x| x.name == *slo && x.prometheus().is_some())
                {
                    return Err(self.err(
                        &o.at("slo"),
                        format!("{slo} is a Prometheus objective, read when a phase ends, not each second after an event: recovery_time watches an SLO of the load"),
                    ));
                }
            }
        }
        Ok((out, raw))
    }

    fn objective_parts<'v>(&self, o: &Obj<'v>) -> R<ObjectiveParts<'v>> {
        let name = self.req_str(o, "name", "a name for the SLO, e.g. availability")?;
        let (metric, objective, prometheus) = match o.get("prometheus") {
            Some((pp, pv)) => {
                let (objective, q) = self.prometheus(o, &pp, pv)?;
                ("", objective, Some(q))
            }
            None => {
                let metric = self.req_str(
                    o,
                    "metric",
                    "what is measured: p50, p90, p95, p99, p999, max, success_rate, availability, error_rate, status_rate, throughput or recovery_time (or prometheus: {url, query, objective})",
                )?;
                let objective = self.req_str(
                    o,
                    "objective",
                    "a comparison and a threshold in quotes, such as \">= 99.5%\", \"< 500ms\" or \"<= 20s\"",
                )?;
                (metric, objective, None)
            }
        };
        let latency = self.opt_str(o, "latency", "corrected or service")?;
        let statuses: &'v [Value] = match o.get("statuses") {
            None => &[],
            Some((p, v)) => self.list(&p, v, "[\"5xx\", 429, error]")?,
        };
        let slo = self.opt_str(o, "slo", "the name of the SLO that must hold again")?;
        let consecutive = self
            .opt_integer(o, "consecutive", 1, u64::from(u32::MAX))?
            .map(|n| n as u32);
        let over = self.opt_str(o, "over", "phase or interval")?;
        let allow_bad = self
            .opt_integer(o, "allowBad", 0, u64::from(u32::MAX))?
            .map(|n| n as u32);
        Ok(ObjectiveParts {
            name,
            metric,
            objective,
            latency,
            statuses,
            slo,
            consecutive,
            over,
            allow_bad,
            prometheus,
        })
    }

    /// An SLO's `prometheus: {url, query, objective}`: its objective and query.
    fn prometheus<'v>(&self, o: &Obj<'v>, p: &str, v: &'v Value) -> R<(&'v str, PromQuery)> {
        const EXAMPLE: &str = "{url: http://127.0.0.1:9090, query: 'sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))', objective: '< 1'}";
        for key in ["metric", "objective"] {
            if o.has(key) {
                return Err(self.err(
                    &o.at(key),
                    format!("an SLO with prometheus takes its objective inside it and has no {key}: prometheus: {EXAMPLE}"),
                ));
            }
        }
        let q = self.mapping(p, v, &PROM_KEYS, EXAMPLE)?;
        let url = self.req_str(
            &q,
            "url",
            "the base of Prometheus' HTTP API, e.g. http://127.0.0.1:9090",
        )?;
        let query = self.req_str(
            &q,
            "query",
            "a PromQL expression with one value, e.g. sum(rate(envoy_cluster_upstream_rq_retry_overflow[10s]))",
        )?;
        let objective = self.req_str(
            &q,
            "objective",
            "a comparison and a number in quotes, such as \"< 1\" or \">= 99.5%\" (0.995)",
        )?;
        let located = |key: &str| format!("{}: {}", self.at(&q.at(key)), dotted(&q.at(key)));
        Ok((
            objective,
            PromQuery {
                url: url.to_string(),
                query: query.to_string(),
                url_at: located("url"),
                query_at: located("query"),
            },
        ))
    }

    /// Whether `name` is in `spec.slos`; an error naming the SLOs otherwise.
    pub(super) fn known_slo(&self, p: &str, name: &str) -> R<()> {
        if self.slos.iter().any(|s| s == name) {
            return Ok(());
        }
        let list = if self.slos.is_empty() {
            "there are none".to_string()
        } else {
            self.slos.join(", ")
        };
        Err(self.err(p, format!("no SLO named {name:?} in spec.slos ({list})")))
    }

    pub(super) fn stop_condition(
        &self,
        p: &str,
        v: &Value,
        slos: &[Objective],
        raw: &[Obj<'_>],
    ) -> R<StopCondition> {
        let o = self.mapping(p, v, &STOP_KEYS, "{slo: availability, below: 90%, for: 3s}")?;
        let name = self.req_str(&o, "slo", "the name of an SLO in spec.slos")?;
        self.known_slo(&o.at("slo"), name)?;
        let found = slos.iter().zip(raw).find(|(s, _)| s.name == name);
        let Some((slo, slo_raw)) = found else {
            return Err(self.err(&o.at("slo"), format!("no SLO named {name:?} in spec.slos")));
        };
        if matches!(slo.metric, Metric::RecoveryTime { .. }) {
            return Err(self.err(
                &o.at("slo"),
                format!("{name} is a recovery_time SLO, measured after an event, not each second: a stop condition watches a rate, latency or throughput SLO"),
            ));
        }
        if slo.prometheus().is_some() {
            return Err(self.err(
                &o.at("slo"),
                format!("{name} is a Prometheus objective, read from Prometheus when a phase ends, not each second as the load runs (and Prometheus lags by its scrape interval and rate window): a stop condition watches a rate, latency or throughput SLO of the load"),
            ));
        }
        let Some((key, kp, kv)) = self.pick(
            &o,
            &["below", "above"],
            true,
            "the threshold whose breach stops the drill, e.g. below: 90% or above: 2s",
        )?
        else {
            return Err(self.err(&o.p, "give below or above"));
        };
        let written = match kv {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(self.err(
                    &kp,
                    format!(
                        "expected a threshold in the SLO's unit (90%, 2s, 150/s), found {}",
                        json_type(other)
                    ),
                ));
            }
        };
        let (breach, sym) = if key == "below" {
            (Cmp::Lt, "<")
        } else {
            (Cmp::Gt, ">")
        };
        let synthetic = format!("{sym} {written}");
        let parts = ObjectiveParts {
            name,
            metric: slo_raw
                .m
                .get("metric")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            objective: &synthetic,
            latency: slo_raw.m.get("latency").and_then(Value::as_str),
            statuses: slo_raw
                .m
                .get("statuses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            ..ObjectiveParts::default()
        };
        let unit_hint = format!("write it in the unit of {name}'s objective ({})", slo.text);
        let threshold = match Objective::parse(&parts) {
            Ok(t) if t.metric == slo.metric => t.threshold,
            Ok(_) => {
                return Err(self.err(&kp, format!("{key} {written}: {unit_hint}")));
            }
            Err(e) => {
                return Err(self.err(&kp, format!("{key} {written}: {}; {unit_hint}", e.message)));
            }
        };
        let intervals = match o.get("for") {
            None => 1,
            Some((fp, fv)) => {
                let (d, _) = self.duration(&fp, fv)?;
                let n = d.as_nanos().div_ceil(1_000_000_000);
                u32::try_from(n).unwrap_or(u32::MAX).max(1)
            }
        };
        Ok(StopCondition {
            slo: name.to_string(),
            breach,
            threshold,
            text: format!("{key} {written}"),
            intervals,
            at: self.at(p),
        })
    }
}
