//! Judged phases: `hold` (with its expectation and retry check), `flood` and `search`.

use std::time::Duration;

use serde_json::Value;

use super::steps::vs_text;
use super::values::item;
use super::{LOAD_KEYS, Parser, R};
use crate::istio::manifest::json_type;
use crate::scenario::model::{
    Expect, FailureSource, Flood, Hold, Ramp, RetryCheck, Search, SearchOver, StepKind,
};

pub(super) const HOLD_KEYS: [&str; 3] = ["duration", "expect", "retryCheck"];
pub(super) const RETRY_CHECK_KEYS: [&str; 7] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "failureRate",
    "upstream",
];
pub(super) const FLOOD_KEYS: [&str; 14] = [
    "url",
    "method",
    "headers",
    "body",
    "rate",
    "connections",
    "timeout",
    "http2",
    "rampTo",
    "ramp",
    "duration",
    "slos",
    "expect",
    "workers",
];
pub(super) const SEARCH_KEYS: [&str; 8] = [
    "abort",
    "delay",
    "flood",
    "low",
    "high",
    "resolution",
    "probe",
    "maxProbes",
];
pub(super) const SEARCH_ABORT_KEYS: [&str; 7] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "httpStatus",
    "grpcStatus",
];
pub(super) const SEARCH_DELAY_KEYS: [&str; 6] = [
    "virtualService",
    "namespace",
    "route",
    "routeIndex",
    "destination",
    "fixedDelay",
];

const DEFAULT_PROBE: Duration = Duration::from_secs(5);
const DEFAULT_MAX_PROBES: u64 = 8;
/// Default bisection resolution of a percentage search, in percent points.
const DEFAULT_PERCENT_RESOLUTION: f64 = 2.0;

impl Parser<'_> {
    pub(super) fn hold(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        if let Value::String(_) | Value::Number(_) = v {
            let (duration, text) = self.duration(p, v)?;
            return Ok((
                StepKind::Hold(Hold {
                    duration,
                    expect: Expect::Hold,
                    retry_check: None,
                }),
                format!("hold {text}"),
            ));
        }
        let o = self.mapping(p, v, &HOLD_KEYS, "10s or {duration: 10s, expect: breach}")?;
        let (dp, dv) = self.req(&o, "duration", "how long the phase lasts, e.g. 10s")?;
        let (duration, text) = self.duration(&dp, dv)?;
        let expect = match o.get("expect") {
            None => Expect::Hold,
            Some((ep, ev)) => self.expect(&ep, ev)?,
        };
        let retry_check = o
            .get("retryCheck")
            .map(|(rp, rv)| self.retry_check(&rp, rv))
            .transpose()?;
        let mut label = format!("hold {text}{}", expect_text(&expect));
        if let Some(rc) = &retry_check {
            label.push_str(&format!(", retry check on {}", vs_text(&rc.vs)));
        }
        Ok((
            StepKind::Hold(Hold {
                duration,
                expect,
                retry_check,
            }),
            label,
        ))
    }

    fn expect(&self, p: &str, v: &Value) -> R<Expect> {
        const FORMS: &str = "hold, breach, ignore or {breach: [SLO names]}";
        let e = match v {
            Value::String(s) => match s.as_str() {
                "hold" => Expect::Hold,
                "breach" => Expect::Breach { slos: Vec::new() },
                "ignore" => Expect::Ignore,
                other => {
                    return Err(self.err(p, format!("invalid value {other:?}: expect is {FORMS}")));
                }
            },
            Value::Object(_) => {
                let o = self.mapping(p, v, &["breach"], "{breach: [availability]}")?;
                let (bp, bv) = self.req(
                    &o,
                    "breach",
                    "the SLOs that must be breached, e.g. [availability]",
                )?;
                let list = self.list(&bp, bv, "[availability]")?;
                if list.is_empty() {
                    return Err(self.err(
                        &bp,
                        "name at least one SLO, or write expect: breach for all of them",
                    ));
                }
                let mut slos = Vec::new();
                for (i, n) in list.iter().enumerate() {
                    let np = item(&bp, i);
                    let name = self.string(&np, n, "the name of an SLO in spec.slos")?;
                    self.known_slo(&np, name)?;
                    if self.recovery.iter().any(|r| r == name) {
                        return Err(self.err(
                            &np,
                            format!("{name} is a recovery_time SLO, judged after the drill, not in a phase: name the SLOs this step must breach (rates, latency, throughput)"),
                        ));
                    }
                    slos.push(name.to_string());
                }
                Expect::Breach { slos }
            }
            other => {
                return Err(self.err(p, format!("expected {FORMS}, found {}", json_type(other))));
            }
        };
        if matches!(e, Expect::Breach { .. }) && self.slos.is_empty() {
            return Err(self.err(
                p,
                "expect: breach needs an SLO to breach: add spec.slos (and spec.load for them to judge)",
            ));
        }
        Ok(e)
    }

    fn retry_check(&self, p: &str, v: &Value) -> R<RetryCheck> {
        let o = self.mapping(
            p,
            v,
            &RETRY_CHECK_KEYS,
            "{virtualService: repeater, upstream: go-demo-8}",
        )?;
        let vs = self.vs_ref(&o)?;
        let selector = self.selector(&o)?;
        let failure = match self.pick(
            &o,
            &["failureRate", "upstream"],
            true,
            "the per-attempt failure rate the prediction uses: failureRate: 50% or upstream: <VirtualService with the abort>",
        )? {
            Some(("failureRate", fp, fv)) => FailureSource::Rate(self.share(&fp, fv)?),
            Some((_, up, uv)) => FailureSource::Upstream(self.vs_short(&up, uv)?),
            None => return Err(self.err(&o.p, "give failureRate or upstream")),
        };
        if !self.has_load {
            return Err(self.err(
                p,
                "a retry check compares the prediction with what spec.load measures: add spec.load",
            ));
        }
        Ok(RetryCheck {
            vs,
            selector,
            failure,
        })
    }

    pub(super) fn flood(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &FLOOD_KEYS,
            "{url: \"http://{ingress}/\", rate: 50, rampTo: 400, ramp: 5s, duration: 10s}",
        )?;
        let mut load = self.load(&o, true)?;
        let (dp, dv) = self.req(&o, "duration", "how long the flood lasts, e.g. 10s")?;
        let (duration, dtext) = self.duration(&dp, dv)?;
        load.ramp = match (o.get("rampTo"), o.get("ramp")) {
            (None, None) => None,
            (Some((tp, _)), None) => {
                return Err(self.err(&tp, "rampTo needs ramp: how long the rate takes to go from rate to rampTo, e.g. ramp: 5s"));
            }
            (None, Some((rp, _))) => {
                return Err(self.err(
                    &rp,
                    "ramp needs rampTo: the rate (requests/s) the ramp ends at",
                ));
            }
            (Some((tp, tv)), Some((rp, rv))) => {
                let to = self.rate(&tp, tv)?;
                let (over, rtext) = self.duration(&rp, rv)?;
                if over > duration {
                    return Err(self.err(
                        &rp,
                        format!("the ramp ({rtext}) is longer than the flood ({dtext}): the rate would never reach rampTo"),
                    ));
                }
                Some(Ramp { to, over })
            }
        };
        let slos = match o.get("slos") {
            None => Vec::new(),
            Some((sp, sv)) => {
                let (slos, raw) = self.slos(&sp, sv, true, "the flood")?;
                if let Some((o, _)) = raw
                    .iter()
                    .zip(&slos)
                    .find(|(_, x)| matches!(x.metric, crate::slo::Metric::RecoveryTime { .. }))
                {
                    return Err(self.err(
                        &o.at("metric"),
                        "a flood's SLOs judge its own traffic while it runs: recovery_time belongs in spec.slos",
                    ));
                }
                if let Some((o, _)) = raw
                    .iter()
                    .zip(&slos)
                    .find(|(_, x)| x.prometheus().is_some())
                {
                    return Err(self.err(
                        &o.at("prometheus"),
                        "a flood's SLOs judge its own traffic while it runs: Prometheus objectives belong in spec.slos (they are judged over the flood's phase too)",
                    ));
                }
                slos
            }
        };
        let expect = match o.get("expect") {
            None => Expect::Hold,
            Some((ep, ev)) => self.expect(&ep, ev)?,
        };
        let workers = match o.get("workers") {
            None => 1,
            Some((wp, wv)) => {
                let n = wv
                    .as_u64()
                    .filter(|n| (1..=u64::from(crate::fleet::MAX_WORKERS)).contains(n))
                    .ok_or_else(|| {
                        self.err(
                            &wp,
                            format!(
                                "workers is a number of local worker processes, from 1 to {}",
                                crate::fleet::MAX_WORKERS
                            ),
                        )
                    })?;
                let conns = load.connections;
                if (conns as u64) < n {
                    return Err(self.err(
                        &wp,
                        format!("{n} workers need at least {n} connections (the flood has {conns}): give connections: {n} or more"),
                    ));
                }
                n as u32
            }
        };
        let rate = load.rate.unwrap_or_default();
        let mut label = match load.ramp {
            Some(r) => format!("flood {rate}→{}/s for {dtext}", r.to),
            None => format!("flood {rate}/s for {dtext}"),
        };
        if workers > 1 {
            label.push_str(&format!(" on {workers} workers"));
        }
        Ok((
            StepKind::Flood(Flood {
                load,
                duration,
                slos,
                expect,
                workers,
            }),
            label,
        ))
    }

    pub(super) fn search(&self, p: &str, v: &Value) -> R<(StepKind, String)> {
        let o = self.mapping(
            p,
            v,
            &SEARCH_KEYS,
            "{abort: {virtualService: go-demo-8, httpStatus: 500}, low: 0, high: 100}",
        )?;
        let Some((key, kp, kv)) = self.pick(
            &o,
            &["abort", "delay", "flood"],
            true,
            "what is searched: the percentage of an abort or a delay, or a flood's rate",
        )?
        else {
            return Err(self.err(&o.p, "give abort, delay or flood"));
        };
        let (over, label) = match key {
            "abort" => {
                let a = self.mapping(
                    &kp,
                    kv,
                    &SEARCH_ABORT_KEYS,
                    "{virtualService: go-demo-8, httpStatus: 500}",
                )?;
                let vs = self.vs_ref(&a)?;
                let label = format!("search abort % on {}", vs_text(&vs));
                (
                    SearchOver::Abort {
                        selector: self.selector(&a)?,
                        code: self.abort_code(&a)?,
                        vs,
                    },
                    label,
                )
            }
            "delay" => {
                let d = self.mapping(
                    &kp,
                    kv,
                    &SEARCH_DELAY_KEYS,
                    "{virtualService: go-demo-8, fixedDelay: 2s}",
                )?;
                let vs = self.vs_ref(&d)?;
                let selector = self.selector(&d)?;
                let (fp, fv) =
                    self.req(&d, "fixedDelay", "how long delayed requests wait, e.g. 2s")?;
                let label = format!("search delay % on {}", vs_text(&vs));
                (
                    SearchOver::Delay {
                        vs,
                        selector,
                        fixed: self.istio_duration(&fp, fv)?,
                    },
                    label,
                )
            }
            _ => {
                let f = self.mapping(&kp, kv, &LOAD_KEYS, "{url: \"http://{ingress}/\"}")?;
                (
                    SearchOver::FloodRate {
                        load: self.load(&f, false)?,
                    },
                    "search flood rate".to_string(),
                )
            }
        };
        let rates = matches!(over, SearchOver::FloodRate { .. });
        let bound = |k: &str, default: f64| -> R<f64> {
            match o.get(k) {
                Some((bp, bv)) => self.number(&bp, bv, if rates { "a rate in requests/s" } else { "a percentage from 0 to 100" }),
                None if rates => Err(self.err(
                    &o.at(k),
                    format!("{k} is required: the flood rate (requests/s) the search starts from ({k}: 50)"),
                )),
                None => Ok(default),
            }
        };
        let low = bound("low", 0.0)?;
        let high = bound("high", 100.0)?;
        if rates {
            if low <= 0.0 {
                return Err(self.err(
                    &o.at("low"),
                    format!("invalid rate {low}: more than 0 requests/s"),
                ));
            }
        } else if !(0.0..=100.0).contains(&low) {
            return Err(self.err(
                &o.at("low"),
                format!("invalid percentage {low}: from 0 to 100"),
            ));
        } else if high > 100.0 {
            return Err(self.err(
                &o.at("high"),
                format!("invalid percentage {high}: from 0 to 100"),
            ));
        }
        if low >= high {
            return Err(self.err(
                &o.at("high"),
                format!("high ({high}) must be more than low ({low})"),
            ));
        }
        let resolution = match o.get("resolution") {
            Some((rp, rv)) => {
                let r = self.number(&rp, rv, "the width at which the search stops, e.g. 2")?;
                if r <= 0.0 || r >= high - low {
                    return Err(self.err(
                        &rp,
                        format!(
                            "invalid resolution {r}: more than 0 and less than high − low ({})",
                            high - low
                        ),
                    ));
                }
                r
            }
            None if rates => (high - low) / 32.0,
            None => DEFAULT_PERCENT_RESOLUTION.min((high - low) / 2.0),
        };
        let probe = match o.get("probe") {
            None => DEFAULT_PROBE,
            Some((pp, pv)) => self.duration(&pp, pv)?.0,
        };
        let max_probes = self
            .opt_integer(&o, "maxProbes", 1, 20)?
            .unwrap_or(DEFAULT_MAX_PROBES) as u32;
        if self.slos.is_empty() {
            return Err(self.err(
                p,
                "a search looks for the largest value at which the SLOs hold: add spec.slos (and spec.load for them to judge)",
            ));
        }
        if !self.has_load {
            return Err(self.err(
                p,
                "a search judges each probe with spec.slos on spec.load: add spec.load",
            ));
        }
        Ok((
            StepKind::Search(Search {
                over,
                low,
                high,
                resolution,
                probe,
                max_probes,
            }),
            label,
        ))
    }
}

fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Hold => String::new(),
        Expect::Breach { slos } if slos.is_empty() => " (expect breach)".to_string(),
        Expect::Breach { slos } => format!(" (expect breach of {})", slos.join(", ")),
        Expect::Ignore => " (not judged)".to_string(),
    }
}
