//! What happened on the mesh, from Envoy's stats (admin `/stats`) and its access log:
//! faults injected, retries, retry overflow, timeouts, per-try timeouts, upstream
//! requests per downstream request (retry amplification) and response flags, per hop.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MeshError;
use super::envoy;

/// One hop (listener): the ingress or a service's sidecar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HopStats {
    pub name: String,
    /// `http.<hop>.downstream_rq_total`.
    pub downstream_requests: u64,
    /// `http.<hop>.downstream_rq_completed`: what the access log should hold.
    #[serde(default)]
    pub completed_requests: u64,
    pub aborts_injected: u64,
    pub delays_injected: u64,
    /// Requests in the access log.
    pub logged_requests: u64,
    /// Sum of `%UPSTREAM_REQUEST_ATTEMPT_COUNT%` over logged requests.
    pub upstream_attempts: u64,
    /// Logged requests that reached the route's upstream: all but those answered by
    /// fault injection (flag `FI`) or that matched no route (`NR`), which are never
    /// sent upstream. The denominator of [`amplification`](Self::amplification).
    #[serde(default)]
    pub routed_requests: u64,
    /// Response flags (FI, DI, UF, URX, UT, UO, ...) and how often each was logged.
    pub response_flags: BTreeMap<String, u64>,
    pub status_codes: BTreeMap<String, u64>,
}

impl HopStats {
    /// Upstream attempts per request that reached the route's upstream (1.0 = no
    /// retries): requests answered by an injected abort or matching no route never go
    /// upstream and are left out, so an abort alone never pulls it below 1. `None`
    /// while no request went upstream.
    pub fn amplification(&self) -> Option<f64> {
        (self.routed_requests > 0)
            .then(|| self.upstream_attempts as f64 / self.routed_requests as f64)
    }
}

/// One upstream cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub name: String,
    pub upstream_requests: u64,
    pub retries: u64,
    pub retry_success: u64,
    pub retry_limit_exceeded: u64,
    pub retry_overflow: u64,
    pub timeouts: u64,
    pub per_try_timeouts: u64,
    pub connect_failures: u64,
}

/// A snapshot of the whole mesh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshStats {
    pub hops: Vec<HopStats>,
    pub clusters: Vec<ClusterStats>,
}

impl MeshStats {
    /// Reads Envoy's counters and the access log.
    pub fn collect(
        admin: SocketAddr,
        access_log: &Path,
        hops: &[String],
    ) -> Result<Self, MeshError> {
        let (status, text) = envoy::get(admin, "/stats?filter=^(http|cluster)\\.")?;
        if status != 200 {
            return Err(MeshError::Admin {
                path: "/stats".into(),
                reason: format!("HTTP {status}"),
            });
        }
        let counters = parse_counters(&text);
        let c = |k: String| counters.get(&k).copied().unwrap_or(0);
        let mut out = MeshStats::default();
        for h in hops {
            out.hops.push(HopStats {
                name: h.clone(),
                downstream_requests: c(format!("http.{h}.downstream_rq_total")),
                completed_requests: c(format!("http.{h}.downstream_rq_completed")),
                aborts_injected: c(format!("http.{h}.fault.aborts_injected")),
                delays_injected: c(format!("http.{h}.fault.delays_injected")),
                ..HopStats::default()
            });
        }
        let mut names: Vec<&str> = counters
            .keys()
            .filter_map(|k| {
                k.strip_prefix("cluster.")?
                    .strip_suffix(".upstream_rq_total")
            })
            .collect();
        names.sort_unstable();
        for n in names {
            let k = |s: &str| c(format!("cluster.{n}.{s}"));
            out.clusters.push(ClusterStats {
                name: n.to_string(),
                upstream_requests: k("upstream_rq_total"),
                retries: k("upstream_rq_retry"),
                retry_success: k("upstream_rq_retry_success"),
                retry_limit_exceeded: k("upstream_rq_retry_limit_exceeded"),
                retry_overflow: k("upstream_rq_retry_overflow"),
                timeouts: k("upstream_rq_timeout"),
                per_try_timeouts: k("upstream_rq_per_try_timeout"),
                connect_failures: k("upstream_cx_connect_fail"),
            });
        }
        // Envoy flushes the access log every 250 ms: wait (bounded) until it holds a
        // line for every request the counters say completed, reading only what is new.
        let mut log = AccessLogReader::default();
        log.read_new(access_log, &mut out.hops);
        let deadline = Instant::now() + LOG_WAIT;
        while out
            .hops
            .iter()
            .any(|h| h.logged_requests < h.completed_requests)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(25));
            log.read_new(access_log, &mut out.hops);
        }
        Ok(out)
    }

    /// What happened between `earlier` and `self` (counters subtracted).
    pub fn since(&self, earlier: &MeshStats) -> MeshStats {
        let sub_map = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(b.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        let hops = self
            .hops
            .iter()
            .map(|h| {
                let e = earlier
                    .hops
                    .iter()
                    .find(|x| x.name == h.name)
                    .cloned()
                    .unwrap_or_default();
                HopStats {
                    name: h.name.clone(),
                    downstream_requests: h
                        .downstream_requests
                        .saturating_sub(e.downstream_requests),
                    completed_requests: h.completed_requests.saturating_sub(e.completed_requests),
                    aborts_injected: h.aborts_injected.saturating_sub(e.aborts_injected),
                    delays_injected: h.delays_injected.saturating_sub(e.delays_injected),
                    logged_requests: h.logged_requests.saturating_sub(e.logged_requests),
                    upstream_attempts: h.upstream_attempts.saturating_sub(e.upstream_attempts),
                    routed_requests: h.routed_requests.saturating_sub(e.routed_requests),
                    response_flags: sub_map(&h.response_flags, &e.response_flags),
                    status_codes: sub_map(&h.status_codes, &e.status_codes),
                }
            })
            .collect();
        let clusters = self
            .clusters
            .iter()
            .map(|c| {
                let e = earlier
                    .clusters
                    .iter()
                    .find(|x| x.name == c.name)
                    .cloned()
                    .unwrap_or_default();
                ClusterStats {
                    name: c.name.clone(),
                    upstream_requests: c.upstream_requests.saturating_sub(e.upstream_requests),
                    retries: c.retries.saturating_sub(e.retries),
                    retry_success: c.retry_success.saturating_sub(e.retry_success),
                    retry_limit_exceeded: c
                        .retry_limit_exceeded
                        .saturating_sub(e.retry_limit_exceeded),
                    retry_overflow: c.retry_overflow.saturating_sub(e.retry_overflow),
                    timeouts: c.timeouts.saturating_sub(e.timeouts),
                    per_try_timeouts: c.per_try_timeouts.saturating_sub(e.per_try_timeouts),
                    connect_failures: c.connect_failures.saturating_sub(e.connect_failures),
                }
            })
            .collect();
        MeshStats { hops, clusters }
    }

    pub fn hop(&self, name: &str) -> Option<&HopStats> {
        self.hops.iter().find(|h| h.name == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterStats> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Totals over the callers' (outbound) clusters. The replicas' inbound clusters
    /// are left out: each request a caller sends a replica passes both, and would
    /// count twice.
    pub fn totals(&self) -> ClusterStats {
        let mut t = ClusterStats {
            name: "total".into(),
            ..ClusterStats::default()
        };
        for c in self
            .clusters
            .iter()
            .filter(|c| !super::translate::is_inbound_cluster(&c.name))
        {
            t.upstream_requests += c.upstream_requests;
            t.retries += c.retries;
            t.retry_success += c.retry_success;
            t.retry_limit_exceeded += c.retry_limit_exceeded;
            t.retry_overflow += c.retry_overflow;
            t.timeouts += c.timeouts;
            t.per_try_timeouts += c.per_try_timeouts;
            t.connect_failures += c.connect_failures;
        }
        t
    }
}

fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.trim().to_string(), v.trim().parse::<u64>().ok()?))
        })
        .collect()
}

/// A saved snapshot of the counters (`mesh stats --reset`): later reads subtract it,
/// so a user measures one window instead of everything since the mesh started. It
/// names the Envoy it was taken from: counters of another (restarted) mesh cannot be
/// subtracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub taken_at: jiff::Timestamp,
    pub envoy_pid: u32,
    pub stats: MeshStats,
}

/// The longest wait for the access log to catch up with the counters.
const LOG_WAIT: Duration = Duration::from_secs(1);

/// Reads the access log incrementally: each call parses only the complete lines
/// written since the last one.
#[derive(Debug, Default)]
struct AccessLogReader {
    offset: u64,
    partial: Vec<u8>,
}

impl AccessLogReader {
    fn read_new(&mut self, path: &Path, hops: &mut [HopStats]) {
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        count_lines(&String::from_utf8_lossy(&complete), hops);
    }
}

fn count_lines(text: &str, hops: &mut [HopStats]) {
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(hop) = v.get("hop").and_then(Value::as_str) else {
            continue;
        };
        let Some(h) = hops.iter_mut().find(|h| h.name == hop) else {
            continue;
        };
        h.logged_requests += 1;
        let num = |k: &str| match v.get(k) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        h.upstream_attempts += num("attempts").unwrap_or(0);
        if let Some(s) = num("status") {
            *h.status_codes.entry(s.to_string()).or_default() += 1;
        }
        let mut routed = true;
        if let Some(f) = v.get("flags").and_then(Value::as_str) {
            for flag in f.split(',').filter(|x| !x.is_empty() && *x != "-") {
                routed &= flag != "FI" && flag != "NR";
                *h.response_flags.entry(flag.to_string()).or_default() += 1;
            }
        }
        if routed {
            h.routed_requests += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_access_log_is_read_incrementally_and_partial_lines_wait() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("access.log");
        let mut f = std::fs::File::create(&p).expect("create");
        let mut hops = vec![HopStats {
            name: "ingress".into(),
            ..HopStats::default()
        }];
        let mut r = AccessLogReader::default();
        let line = r#"{"hop":"ingress","status":"200","flags":"-","attempts":"2"}"#;
        write!(f, "{line}\n{}", &line[..10]).expect("write");
        r.read_new(&p, &mut hops);
        assert_eq!(hops[0].logged_requests, 1);
        // The rest of the half-written line: counted once, nothing read twice.
        writeln!(f, "{}", &line[10..]).expect("write");
        r.read_new(&p, &mut hops);
        r.read_new(&p, &mut hops);
        assert_eq!(hops[0].logged_requests, 2);
        assert_eq!(hops[0].upstream_attempts, 4);
    }

    #[test]
    fn amplification_counts_only_requests_that_went_upstream() {
        let mut hops = vec![HopStats {
            name: "ingress".into(),
            ..HopStats::default()
        }];
        count_lines(
            concat!(
                r#"{"hop":"ingress","status":"200","flags":"-","attempts":"2"}"#,
                "\n",
                r#"{"hop":"ingress","status":"200","flags":"URX","attempts":"1"}"#,
                "\n",
                r#"{"hop":"ingress","status":"503","flags":"FI","attempts":"0"}"#,
                "\n",
                r#"{"hop":"ingress","status":"404","flags":"NR","attempts":"0"}"#,
                "\n",
                r#"{"hop":"ingress","status":"200","flags":"DI","attempts":"1"}"#,
                "\n",
            ),
            &mut hops,
        );
        let h = &hops[0];
        assert_eq!((h.logged_requests, h.routed_requests), (5, 3));
        assert_eq!(h.amplification(), Some(4.0 / 3.0));
        let only_aborts = HopStats {
            logged_requests: 3,
            ..HopStats::default()
        };
        assert_eq!(only_aborts.amplification(), None);
    }
}
