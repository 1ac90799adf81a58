//! `meshdrill load`: flags → [`LoadConfig`], run on a Tokio runtime with Ctrl-C and an
//! optional progress bar and HdrHistogram interval log, then the text or JSON report.
//!
//! Exit codes: 0 done; 2 bad input (URL, port 0, rate, flags, reserved headers, files);
//! 3 when no request got an HTTP answer at all (target unreachable: every request
//! failed to connect, reset or timed out), or when the run stopped early because every
//! connection was refused for 1 s (nothing listens; not with `--keep-going`) — the
//! report is still printed; 130 after Ctrl-C (results so far printed).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::Tag;
use serde_json::{Map, Value, json};

use super::{CliResult, Exit, Failure, io_err};
use crate::load::{self, Cancel, IntervalSnapshot, LoadConfig, LoadReport, Rate, Stop};

/// Output format of `meshdrill load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadOutput {
    /// A human summary.
    Text,
    /// One JSON object (see schema/load.json).
    Json,
}

#[derive(Debug, Parser)]
#[command(
    after_help = "Closed loop by default (each connection sends its next request when the last answer \
arrives). With --rate the loop is open: requests are due on a fixed schedule and latency counts from \
each request's intended start, so a stalled target shows in the percentiles (no coordinated \
omission); service_time_ms counts from the actual send. --ramp-to/--ramp make the rate climb \
linearly (flood drills).\n\nExit codes: 0 done, 2 usage or input error, 3 no request got an HTTP \
answer (target unreachable; a run where every connection is refused for 1 s stops there unless \
--keep-going), 130 interrupted (results so far are printed).\n\nWhen the target falls behind a \
--rate, requests due in the window are sent late, during the drain (nothing runs past -d plus \
--timeout); rps counts only those sent in the window, sent_late the rest, and behind_schedule \
flags the run."
)]
pub struct LoadArgs {
    /// Target URL (http:// or https://).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Connections (one request in flight on each).
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "CONNS",
        default_value_t = 50
    )]
    pub conns: usize,
    /// Run for this long (e.g. 30s, 1m); no request is due after it. Default 10s.
    /// duration_s and rps cover this send window; answers still in flight after it are
    /// awaited (up to --timeout) and that wait is reported as drain_s.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Send exactly this many requests.
    #[arg(short = 'n', long, value_name = "REQUESTS", value_parser = parse_count)]
    pub requests: Option<u64>,
    /// Open loop at this many requests/s (over all connections).
    #[arg(long, value_name = "RPS", allow_negative_numbers = true, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Ramp the rate linearly from --rate to this (requests/s) over --ramp, then hold it.
    #[arg(long, value_name = "RPS", requires_all = ["rate", "ramp"], allow_negative_numbers = true, value_parser = parse_rate)]
    pub ramp_to: Option<f64>,
    /// Length of the ramp (e.g. 30s).
    #[arg(long, value_name = "DURATION", requires = "ramp_to", value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// A request header, 'Name: value' (repeatable; 'Host: name' routes in a mesh).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file (at most 64 MiB).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Per-request timeout, connect included (a timed-out request counts as an error).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Use HTTP/2 (prior knowledge on http://, ALPN on https://).
    #[arg(long)]
    pub http2: bool,
    /// Accept any TLS certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: LoadOutput,
    /// Write an HdrHistogram interval log (values in ns; tag "service" = service time).
    #[arg(long, value_name = "FILE")]
    pub hist_log: Option<PathBuf>,
    /// Run to the end even when every connection is refused (by default a run stops
    /// after 1 s of nothing but refused connections: nothing listens, exit 3).
    #[arg(long)]
    pub keep_going: bool,
    /// Also report the latency of 2xx answers alone (latency_2xx_ms): fast 429s or 503s
    /// pull the all-request percentiles down. The all-request figures still count every
    /// request.
    #[arg(long = "latency-2xx")]
    pub latency_2xx: bool,
    /// No progress bar (by default one is drawn on stderr when it is a terminal).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Snapshot interval for the progress bar and the interval log.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Split the run across N meshdrill worker processes on this machine (rate, -n and
    /// connections split; one common start; histograms merged exactly). The report
    /// adds one line per worker; a worker that fails makes it partial (exit 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Worker mode: run share I (0-based) of a --workers N run and print the worker
    /// protocol (JSON lines) on stdout, no report. Set by the coordinator, or by a
    /// Kubernetes Indexed Job as $(JOB_COMPLETION_INDEX).
    #[arg(
        long,
        value_name = "I",
        requires = "workers",
        conflicts_with = "hist_log"
    )]
    pub worker_index: Option<u32>,
    /// Worker mode: the common start time of all workers, unix milliseconds or RFC 3339
    /// (default: now). A time already past starts at once; its overdue requests are
    /// sent late or missed.
    #[arg(long, value_name = "TIME", requires = "worker_index", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
    /// Request body, base64-encoded (exact bytes; how workers receive a body).
    #[arg(long, value_name = "BASE64", conflicts_with_all = ["body", "body_file"])]
    pub body_base64: Option<String>,
    /// Worker mode: stop when stdin reaches EOF (the coordinator went away).
    #[arg(long, hide = true, requires = "worker_index")]
    pub stdin_lifeline: bool,
    /// Run the --workers as a Kubernetes Indexed Job (one pod per worker, the meshdrill
    /// image) instead of local processes: their results come back through the pod
    /// logs, and the Job is deleted however the run ends. The workers start 30 s after
    /// the Job is created (scheduling, image pull); one that starts later sends its
    /// overdue requests late, and they count so. Workers run without an Istio sidecar,
    /// as traffic from outside the mesh: a fault a VirtualService applies in the
    /// caller's sidecar does not reach them (send them through a gateway for that).
    #[arg(long, requires = "workers", conflicts_with = "worker_index")]
    pub in_cluster: bool,
    /// The namespace of the --in-cluster Job (default: the kubeconfig context's). Here
    /// `-n` is --requests, as in wrk and oha.
    #[arg(long, value_name = "NS", requires = "in_cluster")]
    pub namespace: Option<String>,
    /// The image the --in-cluster workers run (default: this version's release image).
    #[arg(long, value_name = "IMAGE", requires = "in_cluster")]
    pub image: Option<String>,
    #[command(flatten)]
    pub conn: super::args::ConnArgs,
}

pub(super) fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .ok()
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
            .ok_or_else(|| format!("invalid start time {s:?}: too large"));
    }
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        format!("invalid start time {s:?}: use unix milliseconds or RFC 3339 ({e})")
    })?;
    Ok(SystemTime::from(t))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::istio::types::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("invalid duration {s:?}: use a positive Go duration such as 500ms, 30s or 1m")
        })
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "invalid rate {s:?}: must be a number of requests per second > 0"
        )),
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid request count {s:?}: must be a whole number >= 1"
        )),
    }
}

/// Turns the flags into a validated [`LoadConfig`] (errors are input errors, exit 2).
pub fn config(a: &LoadArgs) -> CliResult<LoadConfig> {
    let mut b = LoadConfig::builder(a.url.clone())
        .method(a.method.clone())
        .conns(a.conns)
        .timeout(a.timeout)
        .http2(a.http2)
        .insecure(a.insecure)
        .interval(a.interval)
        .stop_when_refused(!a.keep_going)
        .ok_latency(a.latency_2xx);
    for h in &a.headers {
        b = b.header(h.clone());
    }
    if let Some(body) = &a.body {
        b = b.body(body.clone().into_bytes());
    } else if let Some(b64) = &a.body_base64 {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| Failure::input(anyhow!("--body-base64 is not valid base64: {e}")))?;
        b = b.body(body);
    } else if let Some(f) = &a.body_file {
        b = b.body(read_body(f)?);
    }
    b = b.stop(match (a.requests, a.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    });
    b = b.rate(match (a.rate, a.ramp_to, a.ramp) {
        (None, _, _) => Rate::Max,
        (Some(r), None, _) => Rate::Fixed(r),
        (Some(from), Some(to), Some(over)) => Rate::Ramp { from, to, over },
        (Some(_), Some(_), None) => {
            return Err(Failure::input(anyhow!("--ramp-to needs --ramp DURATION")));
        }
    });
    if let (Some(i), Some(n)) = (a.worker_index, a.workers) {
        b = b.share(i, n);
    }
    if let Some(t) = a.start_at {
        let now = SystemTime::now();
        let off = match t.duration_since(now) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        if off > load::MAX_START_SKEW {
            let when = if t < now { "in the past" } else { "ahead" };
            return Err(Failure::input(anyhow!(
                "--start-at is {} s {when}, more than an hour from now: give the common start time of a run about to begin (the coordinator sets it a moment ahead)",
                off.as_secs()
            )));
        }
        b = b.start_at(t);
    }
    let c = b.build().map_err(Failure::input)?;
    if let (Some(n), None) = (a.workers, a.worker_index) {
        c.check_split(n).map_err(Failure::input)?;
    }
    Ok(c)
}

/// Reads `--body-file`, at most [`load::MAX_BODY`] bytes: a larger file (or a device
/// such as /dev/zero) is refused while reading, before it fills the memory.
fn read_body(f: &std::path::Path) -> CliResult<Vec<u8>> {
    let fail =
        |e: std::io::Error| Failure::input(anyhow!("cannot read --body-file {}: {e}", f.display()));
    let file = File::open(f).map_err(fail)?;
    crate::istio::manifest::read_at_most(file, load::MAX_BODY)
        .map_err(fail)?
        .ok_or_else(|| {
            Failure::input(anyhow!(
                "--body-file {} is larger than the {} MiB body limit: send a smaller body",
                f.display(),
                load::MAX_BODY >> 20
            ))
        })
}

/// Runs `meshdrill load`.
pub fn run(a: LoadArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    if a.worker_index.is_some() {
        return super::fleet::worker(&a, out);
    }
    if a.conn.any() && !a.in_cluster {
        return Err(Failure::input(anyhow!(
            "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout reach a cluster: they go with --workers N --in-cluster"
        )));
    }
    let config = config(&a)?;
    let mut hist_file = match &a.hist_log {
        Some(p) => Some(BufWriter::new(
            File::create(p)
                .with_context(|| format!("cannot create --hist-log {}", p.display()))
                .map_err(Failure::input)?,
        )),
        None => None,
    };
    let rt = runtime()?;

    let progress = Progress::new(&config, a.quiet);
    // Compressed (HISTF...) payloads: the only ones Java's HistogramLogReader (and so
    // HistogramLogAnalyzer and the log processor) decodes.
    let mut serializer = V2DeflateSerializer::new();
    let started = SystemTime::now();
    let mut log_error: Option<String> = None;
    let mut log = match hist_file.as_mut() {
        Some(f) => Some(
            crate::report::histlog::header(
                &format!(
                    "meshdrill load {}: latency in nanoseconds; untagged = from intended start, tag=service = from actual send",
                    a.url
                ),
                started,
            )
            .begin_log_with(f, &mut serializer)
                .map_err(io_err)?,
        ),
        None => None,
    };
    let cancel = Cancel::new();
    let result = rt.block_on(async {
        // Ctrl-C and SIGTERM stop the run; the results so far are printed.
        let signals = cancel.watch_signals();
        let on_interval = |snap: &IntervalSnapshot| {
            progress.update(snap);
            if let Some(w) = log.as_mut() {
                let mut write = |h: &Histogram<u64>, tag| {
                    if let Err(e) = w.write_histogram(h, snap.start, snap.duration, tag) {
                        log_error.get_or_insert_with(|| format!("{e}"));
                    }
                };
                write(&snap.data.latency, None);
                if let Some(s) = &snap.data.service {
                    write(s, Tag::new("service"));
                }
            }
        };
        let r = match a.workers {
            None => load::run(config.clone(), cancel.clone(), on_interval)
                .await
                .map(|r| (r, None))
                .map_err(Failure::target),
            Some(n) if a.in_cluster => {
                super::fleet::coordinate_in_cluster(&config, n, &a, cancel.clone(), on_interval)
                    .await
                    .map(|f| (f.report, Some((f.workers, f.partial))))
            }
            Some(n) => super::fleet::coordinate(&config, n, cancel.clone(), on_interval)
                .await
                .map(|f| (f.report, Some((f.workers, f.partial)))),
        };
        drop(signals);
        r
    });
    progress.finish();
    drop(log);
    if let Some(Err(e)) = hist_file.as_mut().map(|f| f.flush()) {
        log_error.get_or_insert_with(|| e.to_string());
    }
    // Worker tasks are done; don't wait for the Ctrl-C listener's blocking thread.
    rt.shutdown_background();
    let (report, fleet) = result?;

    match a.output {
        LoadOutput::Json => {
            let mut v = to_json(&config, &report);
            if let Some((workers, partial)) = &fleet {
                super::fleet::add_json(&mut v, workers, *partial);
            }
            writeln!(out, "{v}").map_err(io_err)?;
            if let Some(w) = rate_warning(&report) {
                let _ = writeln!(err, "warning: {w}");
            }
        }
        LoadOutput::Text => {
            write_text(out, &config, &report).map_err(io_err)?;
            if let Some((workers, partial)) = &fleet {
                super::fleet::write_text(out, workers, *partial).map_err(io_err)?;
            }
        }
    }
    out.flush().map_err(io_err)?;
    if let Some(e) = log_error {
        return Err(Failure::target(anyhow!("cannot write --hist-log: {e}")));
    }
    if report.cancelled {
        let _ = writeln!(
            err,
            "interrupted after {:.2} s: results so far are above",
            report.window.as_secs_f64()
        );
        return Ok(Exit::Interrupted);
    }
    if let Some((workers, true)) = &fleet {
        return Err(super::fleet::partial_failure(workers, err));
    }
    if report.refused_stop {
        return Err(Failure::target(anyhow!(
            "nothing listens on {}:{}: every connection was refused for {} s; stopped early \
             ({} refused; --keep-going runs to the end)",
            config.target.host,
            config.target.port,
            load::REFUSED_STOP.as_secs(),
            report
                .data
                .counts
                .errors_of(load::ErrorKind::ConnectRefused),
        )));
    }
    if report.requests() > 0 && report.data.counts.responses == 0 {
        let kinds: Vec<String> = report
            .data
            .counts
            .error_kinds()
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect();
        return Err(Failure::target(anyhow!(
            "no request to {} got an HTTP answer ({})",
            a.url,
            kinds.join(", ")
        )));
    }
    Ok(Exit::Ok)
}

/// The runtime a run uses: the connections run on threads of their own (one per
/// CPU, see `load`); this runtime only resolves, merges, draws and, with `--workers`,
/// reads the workers' output.
pub(super) fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::target)
}

// === progress ===

/// An indicatif bar on stderr, only when stderr is a terminal.
struct Progress(Option<indicatif::ProgressBar>, Stop);

impl Progress {
    fn new(c: &LoadConfig, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None, c.stop());
        }
        let len = match c.stop() {
            Stop::Duration(d) => d.as_secs().max(1),
            Stop::Requests(n) => n,
        };
        let target =
            indicatif::ProgressDrawTarget::term_like(Box::new(Narrow(console::Term::stderr())));
        let bar = indicatif::ProgressBar::with_draw_target(Some(len), target);
        // Time (or requests) done of the run's, then the last interval.
        let template = match c.stop() {
            Stop::Duration(_) => "{bar:30} {pos}/{len} s  {msg}",
            Stop::Requests(_) => "{bar:30} {pos}/{len} requests  {msg}",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Self(Some(bar), c.stop())
    }

    fn update(&self, s: &IntervalSnapshot) {
        let Some(bar) = &self.0 else { return };
        match self.1 {
            Stop::Duration(_) => bar.set_position((s.start + s.duration).as_secs()),
            Stop::Requests(_) => bar.inc(s.data.counts.requests()),
        }
        bar.set_message(bar_message(
            s.rps(),
            &s.data.counts,
            ms(s.data.latency.value_at_quantile(0.99)),
        ));
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// The bar's message for one interval: rate, share of 2xx/3xx answers among the
/// requests completed in it, p99, requests with no answer.
fn bar_message(rps: f64, c: &load::Counts, p99_ms: f64) -> String {
    let requests = c.requests();
    let ok: u64 = c
        .statuses()
        .filter(|(code, _)| (200..400).contains(code))
        .map(|(_, n)| n)
        .sum();
    let share = if requests == 0 {
        "-".to_string()
    } else {
        format!("{:.2}%", ok as f64 * 100.0 / requests as f64)
    };
    format!(
        "{rps:.0} req/s  {share} ok  p99 {p99_ms:.1} ms  no answer {}",
        c.errors()
    )
}

/// stderr, three columns narrower than the terminal, for the progress bar. indicatif
/// pads its line to the right edge, so the `^C` a terminal echoes on Ctrl-C wrapped
/// onto a new line; `finish_and_clear` then cleared that line and left the bar on
/// screen above the results. With room left on the line, `^C` lands next to the bar
/// and is cleared with it.
#[derive(Debug)]
pub(super) struct Narrow(pub(super) console::Term);

impl indicatif::TermLike for Narrow {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(3).max(10)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

// === report ===

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

fn percentiles(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (k, q) in QUANTILES {
        let v = if h.is_empty() {
            Value::Null
        } else {
            json!(ms(h.value_at_quantile(q)))
        };
        m.insert(k.to_string(), v);
    }
    let max = if h.is_empty() {
        Value::Null
    } else {
        json!(ms(h.max()))
    };
    m.insert("max".to_string(), max);
    Value::Object(m)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The `-o json` object (contract in DESIGN.md, schema in schema/load.json).
pub fn to_json(c: &LoadConfig, r: &LoadReport) -> Value {
    let counts = &r.data.counts;
    let status: Map<String, Value> = counts
        .statuses()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let kinds: Map<String, Value> = counts
        .error_kinds()
        .map(|(k, n)| (k.name().to_string(), json!(n)))
        .collect();
    let mut v = json!({
        "requests": r.requests(),
        "errors": r.errors(),
        "duration_s": round3(r.window.as_secs_f64()),
        "rps": round3(r.rps()),
        "status_codes": status,
        "latency_ms": percentiles(&r.data.latency),
    });
    let Value::Object(m) = &mut v else {
        return v;
    };
    if let Some(s) = &r.data.service {
        m.insert("service_time_ms".into(), percentiles(s));
    }
    if let Some(l) = &r.data.lag {
        m.insert("send_lag_ms".into(), percentiles(l));
    }
    if let Some(h) = &r.data.ok {
        m.insert("latency_2xx_ms".into(), percentiles(h));
    }
    m.insert("drain_s".into(), json!(round3(r.drain().as_secs_f64())));
    m.insert("sent_in_window".into(), json!(r.sent_in_window()));
    m.insert("sent_late".into(), json!(r.late()));
    m.insert("error_kinds".into(), Value::Object(kinds));
    m.insert("connections".into(), json!(c.conns()));
    m.insert("open_loop".into(), json!(c.rate().is_open()));
    m.insert("target_rps".into(), json!(r.target_rps.map(round3)));
    m.insert("scheduled".into(), json!(r.scheduled));
    m.insert("missed".into(), json!(r.missed()));
    m.insert("behind_schedule".into(), json!(r.behind_schedule()));
    m.insert("abandoned".into(), json!(counts.abandoned));
    m.insert("stopped_early".into(), json!(r.refused_stop));
    m.insert("body_bytes".into(), json!(counts.body_bytes));
    m.insert("resent".into(), json!(counts.resent));
    m.insert("cancelled".into(), json!(r.cancelled));
    v
}

/// A warning when an open-loop run could not keep its schedule (not for an
/// interrupted run: stopping it is not falling behind).
fn rate_warning(r: &LoadReport) -> Option<String> {
    if r.cancelled || r.refused_stop || r.behind_schedule() != Some(true) {
        return None;
    }
    let (target, missed, scheduled) = (r.target_rps?, r.missed()?, r.scheduled?);
    let lag = r
        .data
        .lag
        .as_ref()
        .map(|h| {
            format!(
                "; sends lagged up to {:.0} ms behind their slots",
                ms(h.max())
            )
        })
        .unwrap_or_default();
    Some(format!(
        "the schedule could not be kept: of {scheduled} requests due in the {:.2} s window, \
         {} were sent in it (achieved {:.1} req/s of {target:.1}), {} late, during the drain, \
         and {missed} never{lag}; the target or the generator could not keep up",
        r.window.as_secs_f64(),
        r.sent_in_window(),
        r.rps(),
        r.late(),
    ))
}

/// The human summary.
pub fn write_text(w: &mut impl Write, c: &LoadConfig, r: &LoadReport) -> std::io::Result<()> {
    let counts = &r.data.counts;
    let mode = match c.rate() {
        Rate::Max => "closed loop".to_string(),
        Rate::Fixed(x) => format!("open loop at {x} req/s"),
        Rate::Ramp { from, to, over } => {
            format!("open loop ramping {from} -> {to} req/s over {over:?}")
        }
    };
    writeln!(
        w,
        "Target:    {} ({} connections, {mode})",
        c.url(),
        c.conns()
    )?;
    writeln!(
        w,
        "Requests:  {} sent in {:.2} s = {:.1} req/s{}{} (+{:.2} s {})",
        r.sent_in_window(),
        r.window.as_secs_f64(),
        r.rps(),
        if r.late() > 0 {
            format!(", {} more sent late", r.late())
        } else {
            String::new()
        },
        if r.cancelled {
            " (interrupted)"
        } else if r.refused_stop {
            " (stopped early: every connection refused)"
        } else {
            ""
        },
        r.drain().as_secs_f64(),
        if r.late() > 0 {
            "sending late and waiting for the last answers"
        } else {
            "waiting for the last answers"
        }
    )?;
    if let (Some(t), Some(s), Some(m)) = (r.target_rps, r.scheduled, r.missed()) {
        writeln!(
            w,
            "Rate:      target {t:.1} req/s, {s} due, {} sent in time, {} late, {m} never sent",
            r.sent_in_window(),
            r.late()
        )?;
    }
    if let Some(warn) = rate_warning(r) {
        writeln!(w, "Warning:   {warn}")?;
    }
    let status: Vec<String> = counts
        .statuses()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    writeln!(
        w,
        "Status:    {}",
        if status.is_empty() {
            "none".into()
        } else {
            status.join("  ")
        }
    )?;
    let errors: Vec<String> = counts
        .error_kinds()
        .map(|(k, n)| format!("{}: {n}", k.name()))
        .collect();
    writeln!(
        w,
        "Errors:    {}",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join("  ")
        }
    )?;
    writeln!(
        w,
        "Resent:    {} (idempotent requests sent again after the server closed a kept-alive connection)",
        counts.resent
    )?;
    let line = |w: &mut dyn Write, label: &str, h: &Histogram<u64>| -> std::io::Result<()> {
        if h.is_empty() {
            return writeln!(w, "{label}no answers");
        }
        write!(w, "{label}")?;
        for (k, q) in QUANTILES {
            let k = if k == "p999" { "p99.9" } else { k };
            write!(w, "{k} {:.3}  ", ms(h.value_at_quantile(q)))?;
        }
        writeln!(w, "max {:.3}", ms(h.max()))
    };
    if let Some(s) = &r.data.service {
        line(w, "Latency (ms, from intended start): ", &r.data.latency)?;
        line(w, "Service (ms, from actual send):    ", s)?;
        if let Some(l) = &r.data.lag {
            line(w, "Send lag (ms, behind the slot):    ", l)?;
        }
    } else {
        line(w, "Latency (ms): ", &r.data.latency)?;
    }
    if let Some(h) = &r.data.ok {
        if h.is_empty() {
            writeln!(w, "2xx only (ms): no 2xx answer")?;
        } else {
            line(w, "2xx only (ms): ", h)?;
        }
    }
    write_histogram(w, &r.data.latency)
}

/// Ten linear bins from min to max, with bars.
fn write_histogram(w: &mut impl Write, h: &Histogram<u64>) -> std::io::Result<()> {
    if h.is_empty() {
        return Ok(());
    }
    const BINS: usize = 10;
    let (lo, hi) = (h.min(), h.max().max(h.min() + 1));
    let width = (hi - lo).div_ceil(BINS as u64).max(1);
    let mut bins = [0u64; BINS];
    for v in h.iter_recorded() {
        let i = ((v.value_iterated_to().clamp(lo, hi) - lo) / width) as usize;
        bins[i.min(BINS - 1)] += v.count_since_last_iteration();
    }
    let top = bins.iter().copied().max().unwrap_or(1).max(1);
    writeln!(w, "Latency histogram (ms):")?;
    for (i, n) in bins.iter().enumerate() {
        let from = lo + width * i as u64;
        let bar = "■".repeat(((n * 40).div_ceil(top)) as usize);
        writeln!(
            w,
            "  {:>10.3} .. {:<10.3} {:>10}  {bar}",
            ms(from),
            ms(from + width),
            n
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_rate_success_p99_and_failures_of_the_interval() {
        let mut c = load::Counts::default();
        for _ in 0..3 {
            c.status(200);
        }
        c.status(503);
        c.error(load::ErrorKind::Timeout);
        assert_eq!(
            bar_message(5.0, &c, 12.345),
            "5 req/s  60.00% ok  p99 12.3 ms  no answer 1"
        );
        assert_eq!(
            bar_message(0.0, &load::Counts::default(), 0.0),
            "0 req/s  - ok  p99 0.0 ms  no answer 0"
        );
    }
}
