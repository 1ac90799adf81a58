//! The runner's side of Prometheus objectives: each one queried once before anything
//! changes (an unreachable server or a query without exactly one value ends the run
//! there), and read over each judged phase at the end of every whole second in it.
//!
//! One `query_range` per objective per phase, after the phase (step 1 s, evaluated at
//! the end of each 1 s interval of the load's series) rather than an instant query
//! every second: one request per phase instead of one per second, no task racing the
//! load, and Prometheus evaluates every point at the same instants the series uses.
//! The price: values arrive when the phase ends, so a Prometheus objective cannot be
//! a stop condition (the parser refuses it).

use std::collections::BTreeMap;
use std::time::Duration;

use super::journal::Ending;
use super::runner::Runner;
use crate::prometheus::{PromError, Prometheus};
use crate::slo::{Objective, PromQuery};

/// Points per `query_range` call (Prometheus refuses more than 11,000).
const CHUNK: u64 = 10_000;

/// The run's ending for a query that failed: input (exit 2) when the query is at fault,
/// target (exit 3) when Prometheus is.
fn ending(q: &PromQuery, e: &PromError) -> Ending {
    if e.is_input() {
        Ending::InputError {
            message: format!("{}: {}: {e}", q.query_at, q.query),
        }
    } else {
        Ending::TargetError {
            message: format!("{}: {e}", q.url_at),
        }
    }
}

impl Runner<'_> {
    fn prometheus_slos(&self) -> impl Iterator<Item = (&Objective, &PromQuery)> {
        self.s
            .slos
            .iter()
            .filter_map(|o| o.prometheus().map(|q| (o, q)))
    }

    /// Queries every Prometheus objective once, now: each must answer one value.
    pub(super) async fn check_prometheus(&self) -> Result<(), Ending> {
        for (_, q) in self.prometheus_slos() {
            if let Err(e) = Prometheus::new(&q.url).instant(&q.query, None).await {
                return Err(ending(q, &e));
            }
        }
        Ok(())
    }

    /// Unix seconds of a time on the run's clock.
    fn unix(&self, at: Duration) -> f64 {
        self.started.as_microsecond() as f64 / 1e6 + at.as_secs_f64()
    }

    /// Each Prometheus objective's value at the end of every whole second of the
    /// load's series inside `[start, end)` (in order; `None`: no value, or NaN), also
    /// kept for the journal's series. A phase without a whole second gets the value at
    /// its end.
    pub(super) async fn prometheus_points(
        &mut self,
        start: Duration,
        end: Duration,
    ) -> Result<BTreeMap<String, Vec<Option<f64>>>, Ending> {
        let mut out = BTreeMap::new();
        let first = start.as_secs_f64().ceil() as u64;
        let last = end.as_secs_f64().floor() as u64; // exclusive: seconds first..last
        let queries: Vec<(String, PromQuery)> = self
            .prometheus_slos()
            .map(|(o, q)| (o.name.clone(), q.clone()))
            .collect();
        for (name, q) in queries {
            let p = Prometheus::new(&q.url);
            if last <= first {
                let v = p
                    .instant(&q.query, Some(self.unix(end)))
                    .await
                    .map_err(|e| ending(&q, &e))?;
                out.insert(name, vec![Some(v).filter(|v| !v.is_nan())]);
                continue;
            }
            let mut values = vec![None; (last - first) as usize];
            let origin = self.unix(Duration::ZERO);
            let mut from = first;
            while from < last {
                let to = (from + CHUNK).min(last);
                // Second k is evaluated at its end, k + 1.
                let points = p
                    .range(
                        &q.query,
                        self.unix(Duration::from_secs(from + 1)),
                        self.unix(Duration::from_secs(to)),
                        Duration::from_secs(1),
                    )
                    .await
                    .map_err(|e| ending(&q, &e))?;
                for (t, v) in points {
                    let k = (t - origin).round() as i64 - 1;
                    if k >= first as i64 && k < last as i64 && !v.is_nan() {
                        values[(k as u64 - first) as usize] = Some(v);
                    }
                }
                from = to;
            }
            for (i, v) in values.iter().enumerate() {
                self.prom_series
                    .entry(first + i as u64)
                    .or_default()
                    .insert(name.clone(), v.filter(|v| v.is_finite()));
            }
            out.insert(name, values);
        }
        Ok(out)
    }
}
