//! HdrHistogram interval logs of a drill (`--hist-log FILE`), as HistogramLogAnalyzer
//! and the Java, Python and Rust log readers read them: a `StartTime`/`BaseTime`
//! header (the run's start), then one line per phase and second of the run's clock —
//! `Tag=<phase>,<start s>,<length s>,<max ms>,<compressed histogram>` — with the
//! latency in nanoseconds from each request's intended start (failed requests included
//! at the time they took), as the drill's SLOs count it.
//!
//! One tag per phase: the phase's name with every run of characters outside
//! `[A-Za-z0-9._-]` turned into `_` (`step 2: hold 5s` → `step_2_hold_5s`), made unique
//! with `-2`, `-3`, ... An interval holds the load engine's 100 ms snapshots that lie
//! wholly inside its phase (as the phase's summary does), so the counts of a tag's
//! intervals add up to that phase's `summary.requests`.
//!
//! The runner hands each second over as it closes ([`HistLog::sink`], a
//! [`PhaseHistograms`]); a thread writes it out at once through a bounded channel, so
//! memory stays flat in the length of a drill.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{
    IntervalLogWriterBuilder, IntervalLogWriterError, Tag,
};

use crate::scenario::PhaseHistograms;

/// Intervals waiting to be written at most (then the runner waits for the writer).
const QUEUE: usize = 1024;

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HistLogError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode a histogram: {0}")]
    Encode(String),
    #[error("the writer thread failed")]
    Worker,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub intervals: u64,
    /// The tags, in order of first appearance.
    pub tags: Vec<String>,
}

enum Msg {
    Begin(SystemTime),
    Interval {
        phase: usize,
        name: String,
        start: Duration,
        duration: Duration,
        latency: Histogram<u64>,
    },
    End,
}

/// The [`PhaseHistograms`] the runner gets: hands each interval to the writer thread.
#[derive(Debug)]
struct Sink {
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl PhaseHistograms for Sink {
    fn begin(&self, origin: SystemTime) {
        // A writer that failed has gone: its error comes from `finish`.
        let _ = self.tx.send(Msg::Begin(origin));
    }

    fn interval(
        &self,
        phase: usize,
        name: &str,
        start: Duration,
        duration: Duration,
        latency: &Histogram<u64>,
    ) {
        let _ = self.tx.send(Msg::Interval {
            phase,
            name: name.to_string(),
            start,
            duration,
            latency: latency.clone(),
        });
    }
}

/// An interval log being written by its own thread.
pub struct HistLog {
    tx: SyncSender<Msg>,
    worker: JoinHandle<Result<Written, HistLogError>>,
}

impl HistLog {
    /// Starts writing to `w`; `title` goes in the header's comment (`meshdrill run
    /// network-failure`).
    pub fn start<W: Write + Send + 'static>(w: W, title: &str) -> HistLog {
        let (tx, rx) = sync_channel(QUEUE);
        let title = title.to_string();
        let worker = std::thread::spawn(move || write_log(w, &title, rx));
        HistLog { tx, worker }
    }

    /// What the runner hands the intervals to (`RunOptions::histograms`).
    pub fn sink(&self) -> Arc<dyn PhaseHistograms> {
        Arc::new(Sink {
            tx: self.tx.clone(),
        })
    }

    /// Writes what is left and closes the log (call it once the drill has returned).
    pub fn finish(self) -> Result<Written, HistLogError> {
        let _ = self.tx.send(Msg::End);
        self.worker.join().map_err(|_| HistLogError::Worker)?
    }
}

/// The header every meshdrill interval log starts with (`meshdrill load --hist-log` and
/// drills): format version 1.3, what the log holds (`about`), start and base time
/// `origin`, values in nanoseconds shown as milliseconds.
pub fn header(about: &str, origin: SystemTime) -> IntervalLogWriterBuilder {
    let mut b = IntervalLogWriterBuilder::new();
    b.add_comment("[Histogram log format version 1.3]")
        .add_comment(&format!("[{about}]"))
        .with_start_time(origin)
        .with_base_time(origin)
        .with_max_value_divisor(1_000_000.0);
    b
}

/// The tag for a phase name (see the module's documentation).
pub fn tag_for(name: &str) -> String {
    let mut t = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            t.push(c);
        } else if !t.ends_with('_') {
            t.push('_');
        }
    }
    let t = t.trim_matches('_');
    if t.is_empty() {
        "phase".into()
    } else {
        t.to_string()
    }
}

fn write_log<W: Write>(mut w: W, title: &str, rx: Receiver<Msg>) -> Result<Written, HistLogError> {
    let mut serializer = V2DeflateSerializer::new();
    let mut written = Written::default();
    // Phase id → tag.
    let mut tags: Vec<(usize, String)> = Vec::new();
    let header = |origin: SystemTime| {
        header(
            &format!(
                "{title}: latency in nanoseconds from the intended start (failed requests included); one tag per phase"
            ),
            origin,
        )
    };
    // The header needs the run's start: the runner sends it first (a drill that
    // ended before its load started sends nothing: now, then).
    let first = rx.recv().ok();
    let (origin, first) = match first {
        Some(Msg::Begin(t)) => (t, None),
        m => (SystemTime::now(), m),
    };
    let mut log = header(origin).begin_log_with(&mut w, &mut serializer)?;
    for m in first.into_iter().chain(rx.iter()) {
        match m {
            Msg::Begin(_) => {}
            Msg::Interval {
                phase,
                name,
                start,
                duration,
                latency,
            } => {
                let tag = match tags.iter().find(|(id, _)| *id == phase) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let base = tag_for(&name);
                        let mut t = base.clone();
                        let mut n = 1;
                        while tags.iter().any(|(_, u)| *u == t) {
                            n += 1;
                            t = format!("{base}-{n}");
                        }
                        tags.push((phase, t.clone()));
                        written.tags.push(t.clone());
                        t
                    }
                };
                log.write_histogram(&latency, start, duration, Tag::new(&tag))
                    .map_err(|e| match e {
                        IntervalLogWriterError::IoError(e) => HistLogError::Io(e),
                        e => HistLogError::Encode(e.to_string()),
                    })?;
                written.intervals += 1;
            }
            Msg::End => break,
        }
    }
    drop(log);
    w.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    use super::*;

    #[test]
    fn tags_keep_the_tag_charset() {
        assert_eq!(tag_for("steady state before"), "steady_state_before");
        assert_eq!(
            tag_for("step 2: hold 5s (50% abort, go-demo-8)"),
            "step_2_hold_5s_50_abort_go-demo-8"
        );
        assert_eq!(tag_for(" ,\n"), "phase");
        assert!(Tag::new(&tag_for("a, b\r\nc d")).is_some());
    }

    #[derive(Clone)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new(3).expect("a histogram");
        for v in values {
            h.record(*v).expect("recorded");
        }
        h
    }

    #[test]
    fn each_phase_is_a_tag_and_the_log_reads_back() {
        let buf = Shared(Arc::new(std::sync::Mutex::new(Vec::new())));
        let log = HistLog::start(buf.clone(), "meshdrill run test");
        let sink = log.sink();
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sink.begin(origin);
        let s = Duration::from_secs;
        sink.interval(
            0,
            "steady state",
            s(1),
            s(1),
            &hist(&[1_000_000, 2_000_000]),
        );
        sink.interval(0, "steady state", s(2), s(1), &hist(&[3_000_000]));
        sink.interval(1, "steady state", s(3), s(1), &hist(&[4_000_000]));
        drop(sink);
        let w = log.finish().expect("written");
        assert_eq!(w.intervals, 3);
        assert_eq!(w.tags, ["steady_state", "steady_state-2"]);
        let bytes = buf.0.lock().expect("lock").clone();
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let mut d = Deserializer::new();
        let mut seen = Vec::new();
        for e in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(i) = e.expect("a log entry") {
                let raw = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    i.encoded_histogram(),
                )
                .expect("base64");
                let h: Histogram<u64> = d.deserialize(&mut raw.as_slice()).expect("a histogram");
                seen.push((
                    i.tag().map(|t| t.as_str().to_string()),
                    i.start_timestamp(),
                    h.len(),
                    i.max(),
                ));
            }
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0.as_deref(), Some("steady_state"));
        assert_eq!((seen[0].1, seen[0].2), (s(1), 2));
        // The max column in milliseconds, as Java's writer puts it.
        assert!((seen[0].3 - 2.0).abs() < 0.01, "{}", seen[0].3);
        assert_eq!(seen[2].0.as_deref(), Some("steady_state-2"));
    }

    #[test]
    fn a_drill_without_load_still_writes_a_valid_log() {
        let buf = Shared(Arc::new(std::sync::Mutex::new(Vec::new())));
        let log = HistLog::start(buf.clone(), "meshdrill run test");
        assert_eq!(log.finish().expect("written").intervals, 0);
        let bytes = buf.0.lock().expect("lock").clone();
        assert!(
            String::from_utf8(bytes)
                .expect("utf-8")
                .contains("#[StartTime: ")
        );
    }
}
