//! `meshdrill load --workers N`: the coordinator's output (per-worker lines, the
//! PARTIAL warning) and worker mode (`--worker-index I`), which prints only the worker
//! protocol ([`crate::fleet::wire`]) on stdout.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use super::load::{LoadArgs, config, runtime};
use super::{CliResult, Exit, Failure, io_err};
use crate::fleet::{self, Backend, FleetReport, WorkerSummary, wire};
use crate::load::{self, Cancel, IntervalSnapshot, LoadConfig};

/// Runs `config` on `n` local worker processes of this executable.
pub(super) async fn coordinate(
    config: &LoadConfig,
    n: u32,
    cancel: Cancel,
    on_interval: impl FnMut(&IntervalSnapshot),
) -> CliResult<FleetReport> {
    let exe = std::env::current_exe()
        .context("cannot find the meshdrill executable to start workers")
        .map_err(Failure::target)?;
    let start_at = fleet::start_time(n);
    fleet::run(
        config,
        n,
        start_at,
        Backend::Local { exe },
        cancel,
        on_interval,
    )
    .await
    .map_err(|e| match e {
        fleet::FleetError::NoRuntime => Failure::target(e),
        _ => Failure::input(e),
    })
}

/// Runs `config` on `n` workers in a Kubernetes Indexed Job (`--in-cluster`), reading
/// their results from the pod logs; the Job is deleted however the run ends.
pub(super) async fn coordinate_in_cluster(
    config: &LoadConfig,
    n: u32,
    a: &LoadArgs,
    cancel: Cancel,
    on_interval: impl FnMut(&IntervalSnapshot),
) -> CliResult<FleetReport> {
    use crate::fleet::in_cluster::{self, InCluster, InClusterError};
    let mut err = std::io::stderr();
    let cluster = super::cluster::connect(&a.conn, a.namespace.as_deref(), &mut err).await?;
    let target = InCluster {
        namespace: a
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.namespace.clone()),
        image: a.image.clone(),
    };
    let r = in_cluster::run(&cluster, &target, config, n, cancel, on_interval)
        .await
        .map_err(|e| match e {
            InClusterError::Manifest(_) | InClusterError::Fleet(fleet::FleetError::Split(_)) => {
                Failure::input(e)
            }
            _ => Failure::target(e),
        })?;
    if let Some(e) = r.not_deleted {
        let _ = writeln!(err, "warning: {e}");
    }
    Ok(r.fleet)
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Adds `"workers"` and `"partial"` to the single-run JSON object.
pub(super) fn add_json(v: &mut Value, workers: &[WorkerSummary], partial: bool) {
    let Value::Object(m) = v else { return };
    let list: Vec<Value> = workers
        .iter()
        .map(|w| {
            json!({
                "index": w.index,
                "requests": w.requests,
                "rps": (w.rps * 1000.0).round() / 1000.0,
                "p99_ms": w.p99.map(ms),
                "ended": w.ended(),
                "complete": w.complete,
            })
        })
        .collect();
    m.insert("workers".into(), Value::Array(list));
    m.insert("partial".into(), json!(partial));
}

/// What is missing, for the PARTIAL line and the error: `worker 1 of 2 failed
/// (killed by SIGKILL)`.
fn missing(workers: &[WorkerSummary]) -> String {
    let n = workers.len();
    let failed: Vec<String> = workers
        .iter()
        .filter(|w| !w.complete)
        .map(|w| {
            let why = w.problem.clone().unwrap_or_else(|| w.ended());
            let why = why.strip_prefix("failed: ").unwrap_or(&why).to_string();
            format!("worker {} of {n} failed ({why})", w.index)
        })
        .collect();
    failed.join("; ")
}

/// One line per worker, then the PARTIAL line.
pub(super) fn write_text(
    w: &mut impl Write,
    workers: &[WorkerSummary],
    partial: bool,
) -> std::io::Result<()> {
    for s in workers {
        let p99 = s
            .p99
            .map_or("-".to_string(), |d| format!("{:.3} ms", ms(d)));
        writeln!(
            w,
            "Worker {}:  {} requests, {:.1} req/s, p99 {p99}, {}{}",
            s.index,
            s.requests,
            s.rps,
            s.ended(),
            if s.complete { "" } else { " (INCOMPLETE)" }
        )?;
    }
    if partial {
        writeln!(
            w,
            "PARTIAL: {}; its share is missing from these figures",
            missing(workers)
        )?;
    }
    Ok(())
}

/// Exit 3 for a partial run, after the failed workers' stderr tails on `err`.
pub(super) fn partial_failure(workers: &[WorkerSummary], err: &mut impl Write) -> Failure {
    for w in workers.iter().filter(|w| !w.complete) {
        if let Some(p) = &w.problem {
            let _ = writeln!(err, "worker {}: {p}", w.index);
        }
        if !w.tail.is_empty() {
            let _ = writeln!(err, "worker {} stderr (last lines):", w.index);
            for l in &w.tail {
                let _ = writeln!(err, "  {l}");
            }
        }
    }
    Failure::target(anyhow!(
        "partial result: {}; its share is missing from the figures",
        missing(workers)
    ))
}

/// Worker mode: runs this share and prints the header, one line per interval and the
/// end line on `out` (exit 0 once the end line is written, even when cancelled: the
/// end line says so). With `--stdin-lifeline`, EOF on stdin cancels the run.
pub(super) fn worker(a: &LoadArgs, out: &mut impl Write) -> CliResult {
    let mut config = config(a)?;
    let start_at = config.start_at().unwrap_or_else(SystemTime::now);
    config = config.with_start_at(start_at);
    let rt = runtime()?;
    let header = wire::header(
        config.share(),
        start_at,
        config.rate().is_open(),
        config.ok_latency(),
    );
    writeln!(out, "{header}")
        .and_then(|()| out.flush())
        .map_err(io_err)?;
    let cancel = Cancel::new();
    let mut write_error: Option<String> = None;
    let result = rt.block_on(async {
        let signals = cancel.watch_signals();
        if a.stdin_lifeline {
            tokio::spawn(lifeline(cancel.clone()));
        }
        let r = load::run(config.clone(), cancel.clone(), |snap: &IntervalSnapshot| {
            let line = wire::interval(snap).map_err(|e| e.to_string());
            let written = line.and_then(|l| {
                writeln!(out, "{l}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write to stdout: {e}"))
            });
            if let Err(e) = written {
                // Nobody reads the results any more (or they cannot be encoded): stop.
                write_error.get_or_insert(e);
                cancel.cancel();
            }
        })
        .await;
        drop(signals);
        r
    });
    rt.shutdown_background();
    let report = result.map_err(Failure::target)?;
    if let Some(e) = write_error {
        return Err(Failure::target(anyhow!(
            "worker {}: {e}",
            config.share().index()
        )));
    }
    writeln!(out, "{}", wire::end(&report))
        .and_then(|()| out.flush())
        .map_err(io_err)?;
    Ok(Exit::Ok)
}

/// Cancels the run when stdin reaches EOF (or fails): the coordinator is gone.
async fn lifeline(cancel: Cancel) {
    use tokio::io::AsyncReadExt as _;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use clap::Parser as _;
    use proptest::prelude::*;

    use super::*;
    use crate::load::{Rate, Share, Stop};

    fn rate() -> impl Strategy<Value = Rate> {
        prop_oneof![
            Just(Rate::Max),
            (0.001f64..1e6).prop_map(Rate::Fixed),
            (0.5f64..1e4, 0.5f64..1e4, 1u64..10_000_000_000).prop_map(|(from, to, ns)| {
                Rate::Ramp {
                    from,
                    to,
                    over: Duration::from_nanos(ns),
                }
            }),
        ]
    }

    fn stop() -> impl Strategy<Value = Stop> {
        prop_oneof![
            (20u64..1_000_000).prop_map(Stop::Requests),
            (1u64..100_000_000_000).prop_map(|ns| Stop::Duration(Duration::from_nanos(ns))),
        ]
    }

    proptest! {
        /// The worker argv read back by the CLI gives exactly the config's share, for
        /// every worker: URL, method, headers (Host included, duplicates), body bytes,
        /// rate or ramp, stop, timeouts, flags, connections, start time.
        #[test]
        fn worker_args_round_trip_to_each_share(
            url in prop::sample::select(vec![
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:9/a/b?x=1&y=%20z",
                "https://[::1]:8443/p",
                "http://reviews.default.svc.cluster.local/",
            ]),
            method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "X-CUSTOM"]),
            headers in prop::collection::vec(prop::sample::select(vec![
                "Host: reviews.default",
                "x-a: 1",
                "x-a: two words",
                "accept: */*",
                "x-dash: -v",
                "x-utf8: caf\u{e9}",
            ]), 0..4),
            body in prop::collection::vec(any::<u8>(), 0..64),
            (conns, n) in (1usize..64).prop_flat_map(|c| (Just(c + 19), 1u32..20)),
            rate in rate(),
            stop in stop(),
            timeout_ns in 1u64..100_000_000_000,
            interval_ms in 10u64..100_000,
            (http2, insecure, keep_going, ok) in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
            ahead_ms in -1_800_000i64..1_800_000,
        ) {
            let mut b = LoadConfig::builder(url)
                .method(method)
                .body(body)
                .conns(conns)
                .rate(rate)
                .stop(stop)
                .timeout(Duration::from_nanos(timeout_ns))
                .interval(Duration::from_millis(interval_ms))
                .http2(http2)
                .insecure(insecure)
                .stop_when_refused(!keep_going)
                .ok_latency(ok);
            for h in headers {
                b = b.header(h);
            }
            let c = b.build().expect("a valid config");
            let now_ms = i64::try_from(
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            )
            .unwrap_or(0);
            let start_ms = u64::try_from(now_ms + ahead_ms).unwrap_or(0);
            let start = UNIX_EPOCH + Duration::from_millis(start_ms);
            let args = fleet::worker_args(&c, n, start);
            for i in 0..n {
                let argv = args.iter().cloned().chain([format!("--worker-index={i}")]);
                let parsed = LoadArgs::try_parse_from(argv).expect("the worker argv parses");
                let got = config(&parsed).map_err(|e| e.to_string()).expect("and builds");
                let share = Share::new(i, n).expect("i < n");
                prop_assert_eq!(got, c.with_share(share).with_start_at(start));
            }
        }
    }

    #[test]
    fn start_at_takes_milliseconds_or_rfc3339() {
        let t = |s: &str| super::super::load::parse_start_at(s);
        assert_eq!(t("1500"), Ok(UNIX_EPOCH + Duration::from_millis(1500)));
        assert_eq!(
            t("1970-01-01T00:00:01.5Z"),
            Ok(UNIX_EPOCH + Duration::from_millis(1500))
        );
        assert!(t("yesterday").is_err_and(|e| e.contains("unix milliseconds or RFC 3339")));
    }
}
