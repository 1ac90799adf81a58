//! The worker's stdout: one JSON object per line, read back by the coordinator.
//!
//! ```text
//! {"type":"header","version":1,"worker":0,"workers":2,"start_at_ms":1764650000000,"open_loop":true,"ok_latency":false}
//! {"type":"interval","index":0,"start_ns":0,"duration_ns":1000000000,"counts":{...},"latency":"HISTFAAA...","service":"...","lag":"...","ok":null}
//! {"type":"end","elapsed_ns":...,"window_ns":...,"intervals":3,"scheduled":300,"target_rps":50.0,"cancelled":false,"refused_stop":false,"stop_slack":0}
//! ```
//! Histograms are base64 (standard alphabet) of HdrHistogram's V2 *deflate* encoding
//! (`HISTF…` once decoded from base64, what Java's `HistogramLogReader` reads), so
//! adding the decoded histograms gives exactly the histogram of all samples. Counts
//! carry every status code (`"503": 12`) and every error kind by its JSON name.
//!
//! # What it owns
//! Encoding a worker's header, intervals and report scalars, and strict decoding: every
//! field present and no other, the header first, intervals in increasing order, nothing
//! after the end line, a header for the expected worker. Errors name the worker and the
//! 1-based line. A line that does not start with `{` is not part of the protocol: it is
//! a diagnostic (a Kubernetes pod log mixes the worker's stderr into its stdout) and is
//! handed back as [`Item::Note`] for the tail shown when the worker fails.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::load::{Counts, ErrorKind, IntervalSnapshot, LoadReport, Recorded, Share};

/// The format version this meshdrill writes and reads.
pub const VERSION: u32 = 1;

/// Why a worker line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not a JSON object of the protocol (bad JSON, a missing or unknown field).
    #[error("worker {worker}, line {line}: not a valid worker line: {source}")]
    Json {
        worker: u32,
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    /// A header with another format version.
    #[error(
        "worker {worker}, line {line}: worker output format version {found}, but this meshdrill \
         reads version {VERSION}: run the same meshdrill version on the coordinator and every worker"
    )]
    Version {
        worker: u32,
        line: u64,
        found: String,
    },
    /// A histogram that is not base64 of a V2 (deflate) HdrHistogram.
    #[error("worker {worker}, line {line}: the {which} histogram cannot be decoded: {reason}")]
    Histogram {
        worker: u32,
        line: u64,
        which: &'static str,
        reason: String,
    },
    /// A well-formed line that breaks the protocol (order, values, another worker).
    #[error("worker {worker}, line {line}: {what}")]
    Protocol {
        worker: u32,
        line: u64,
        what: String,
    },
}

/// Why a line could not be written (a histogram the serializer refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the {which} histogram: {reason}")]
pub struct EncodeError {
    which: &'static str,
    reason: String,
}

// === the lines ===

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Header(HeaderLine),
    Interval(IntervalLine),
    End(EndLine),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    version: u32,
    worker: u32,
    workers: u32,
    start_at_ms: u64,
    open_loop: bool,
    ok_latency: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalLine {
    index: u64,
    start_ns: u64,
    duration_ns: u64,
    counts: CountsLine,
    latency: String,
    service: Option<String>,
    lag: Option<String>,
    ok: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsLine {
    responses: u64,
    body_bytes: u64,
    resent: u64,
    late: u64,
    abandoned: u64,
    status: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    elapsed_ns: u64,
    window_ns: u64,
    intervals: u64,
    scheduled: Option<u64>,
    target_rps: Option<f64>,
    cancelled: bool,
    refused_stop: bool,
    stop_slack: u64,
}

// === encode ===

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_line(l: &Line) -> String {
    // Plain structs of numbers, strings and maps with string keys: cannot fail.
    serde_json::to_string(l).unwrap_or_default()
}

/// The first line: which worker this is and when its schedule starts.
pub fn header(share: Share, start_at: SystemTime, open_loop: bool, ok_latency: bool) -> String {
    to_line(&Line::Header(HeaderLine {
        version: VERSION,
        worker: share.index(),
        workers: share.count(),
        start_at_ms: unix_ms(start_at),
        open_loop,
        ok_latency,
    }))
}

/// base64 of the V2 deflate encoding of `h`.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| format!("{e:?}"))?;
    Ok(STANDARD.encode(buf))
}

/// Decodes [`encode_histogram`]'s output.
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD.decode(s).map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not a V2 HdrHistogram: {e:?}"))
}

/// One interval of this worker.
pub fn interval(s: &IntervalSnapshot) -> Result<String, EncodeError> {
    let enc = |which, h: &Histogram<u64>| {
        encode_histogram(h).map_err(|reason| EncodeError { which, reason })
    };
    let opt = |which, h: &Option<Histogram<u64>>| h.as_ref().map(|h| enc(which, h)).transpose();
    let c = &s.data.counts;
    Ok(to_line(&Line::Interval(IntervalLine {
        index: s.index,
        start_ns: ns(s.start),
        duration_ns: ns(s.duration),
        counts: CountsLine {
            responses: c.responses,
            body_bytes: c.body_bytes,
            resent: c.resent,
            late: c.late,
            abandoned: c.abandoned,
            status: c.statuses().map(|(k, n)| (k.to_string(), n)).collect(),
            errors: c
                .error_kinds()
                .map(|(k, n)| (k.name().to_string(), n))
                .collect(),
        },
        latency: enc("latency", &s.data.latency)?,
        service: opt("service", &s.data.service)?,
        lag: opt("lag", &s.data.lag)?,
        ok: opt("ok", &s.data.ok)?,
    })))
}

/// The last line: the report's scalars (the data is the sum of the intervals).
pub fn end(r: &LoadReport) -> String {
    to_line(&Line::End(EndLine {
        elapsed_ns: ns(r.elapsed),
        window_ns: ns(r.window),
        intervals: r.intervals,
        scheduled: r.scheduled,
        target_rps: r.target_rps,
        cancelled: r.cancelled,
        refused_stop: r.refused_stop,
        stop_slack: r.stop_slack,
    }))
}

// === decode ===

/// A worker's header, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub share: Share,
    pub start_at: SystemTime,
    pub open_loop: bool,
    pub ok_latency: bool,
}

/// One interval of one worker, decoded.
#[derive(Debug, Clone)]
pub struct WorkerInterval {
    pub index: u64,
    pub start: Duration,
    pub duration: Duration,
    pub data: Recorded,
}

/// A worker's report scalars, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    pub elapsed: Duration,
    pub window: Duration,
    pub intervals: u64,
    pub scheduled: Option<u64>,
    pub target_rps: Option<f64>,
    pub cancelled: bool,
    pub refused_stop: bool,
    pub stop_slack: u64,
}

/// What one line said.
#[derive(Debug, Clone)]
pub enum Item {
    Header(Header),
    Interval(Box<WorkerInterval>),
    End(End),
    /// Not a protocol line (a diagnostic on a mixed log).
    Note(String),
}

/// Reads one worker's lines in order, strictly.
#[derive(Debug)]
pub struct Stream {
    worker: u32,
    workers: u32,
    line: u64,
    header: bool,
    next_index: u64,
    ended: bool,
}

impl Stream {
    /// For worker `worker` of `workers`.
    pub fn new(worker: u32, workers: u32) -> Self {
        Self {
            worker,
            workers,
            line: 0,
            header: false,
            next_index: 0,
            ended: false,
        }
    }

    /// Whether the end line was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads the next line.
    pub fn feed(&mut self, text: &str) -> Result<Item, WireError> {
        self.line += 1;
        let (worker, line) = (self.worker, self.line);
        if !text.trim_start().starts_with('{') {
            return Ok(Item::Note(text.to_string()));
        }
        let protocol = |what: String| WireError::Protocol { worker, line, what };
        let json = |source| WireError::Json {
            worker,
            line,
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        if value.get("type").and_then(|t| t.as_str()) == Some("header") {
            match value.get("version") {
                Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
                other => {
                    return Err(WireError::Version {
                        worker,
                        line,
                        found: other.map_or("(none)".to_string(), |v| v.to_string()),
                    });
                }
            }
        }
        let parsed: Line = serde_json::from_value(value).map_err(json)?;
        if self.ended {
            return Err(protocol("a line after the end line".into()));
        }
        match parsed {
            Line::Header(h) => {
                if self.header {
                    return Err(protocol("a second header".into()));
                }
                if (h.worker, h.workers) != (self.worker, self.workers) {
                    return Err(protocol(format!(
                        "the header is worker {} of {}, expected {} of {}: the worker was \
                         started with other --worker-index/--workers",
                        h.worker, h.workers, self.worker, self.workers
                    )));
                }
                let share = Share::new(h.worker, h.workers)
                    .ok_or_else(|| protocol("invalid worker index".into()))?;
                self.header = true;
                Ok(Item::Header(Header {
                    share,
                    start_at: UNIX_EPOCH
                        .checked_add(Duration::from_millis(h.start_at_ms))
                        .ok_or_else(|| protocol("start_at_ms out of range".into()))?,
                    open_loop: h.open_loop,
                    ok_latency: h.ok_latency,
                }))
            }
            _ if !self.header => Err(protocol("data before the header line".into())),
            Line::Interval(i) => {
                if i.index < self.next_index {
                    return Err(protocol(format!(
                        "interval {} after interval {}: intervals must increase",
                        i.index,
                        self.next_index.saturating_sub(1)
                    )));
                }
                let decoded = self.interval(i)?;
                self.next_index = decoded.index + 1;
                Ok(Item::Interval(Box::new(decoded)))
            }
            Line::End(e) => {
                self.ended = true;
                Ok(Item::End(End {
                    elapsed: Duration::from_nanos(e.elapsed_ns),
                    window: Duration::from_nanos(e.window_ns),
                    intervals: e.intervals,
                    scheduled: e.scheduled,
                    target_rps: e.target_rps,
                    cancelled: e.cancelled,
                    refused_stop: e.refused_stop,
                    stop_slack: e.stop_slack,
                }))
            }
        }
    }

    fn interval(&self, i: IntervalLine) -> Result<WorkerInterval, WireError> {
        let (worker, line) = (self.worker, self.line);
        let protocol = |what: String| WireError::Protocol { worker, line, what };
        let hist = |which, s: &str| {
            decode_histogram(s).map_err(|reason| WireError::Histogram {
                worker,
                line,
                which,
                reason,
            })
        };
        let opt = |which, s: &Option<String>| s.as_deref().map(|s| hist(which, s)).transpose();
        let mut counts = Counts::default();
        for (code, n) in &i.counts.status {
            let ok = code
                .parse::<u16>()
                .ok()
                .is_some_and(|c| counts.add_status(c, *n));
            if !ok {
                return Err(protocol(format!("status code {code:?} is not 0..=999")));
            }
        }
        for (name, n) in &i.counts.errors {
            let kind = ErrorKind::from_name(name)
                .ok_or_else(|| protocol(format!("unknown error kind {name:?}")))?;
            counts.add_errors(kind, *n);
        }
        counts.responses = i.counts.responses;
        counts.body_bytes = i.counts.body_bytes;
        counts.resent = i.counts.resent;
        counts.late = i.counts.late;
        counts.abandoned = i.counts.abandoned;
        Ok(WorkerInterval {
            index: i.index,
            start: Duration::from_nanos(i.start_ns),
            duration: Duration::from_nanos(i.duration_ns),
            data: Recorded {
                latency: hist("latency", &i.latency)?,
                service: opt("service", &i.service)?,
                lag: opt("lag", &i.lag)?,
                ok: opt("ok", &i.ok)?,
                counts,
            },
        })
    }
}

#[cfg(test)]
mod tests;
