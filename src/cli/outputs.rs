//! What a drill writes besides its journal and its text summary (`run` and `demo`):
//! the HTML report, JUnit XML, HdrHistogram interval logs, and the webhook post.
//! The files are checked before the drill starts (a drill whose record cannot be
//! written is not run) and written after it, whatever its verdict.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;

use super::run::check_writable_as;
use super::{CliResult, Failure};
use crate::report::histlog::HistLog;
use crate::report::{junit, notify};
use crate::scenario::PhaseHistograms;
use crate::scenario::journal::Journal;

/// Flags shared by `run` and `demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write a self-contained HTML report here (verdict, phase timeline with fault
    /// windows, latency and status charts, SLO table, patches); no network needed to
    /// read it.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Write JUnit XML here, for CI: each objective of each phase is a test case
    /// (measured vs objective on failure), inconclusive ones are skipped.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// When the run ends, POST the verdict and the SLO table here as JSON (Slack and
    /// Mattermost incoming webhooks; repeatable). A failed post is a warning and never
    /// changes the exit code.
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// Write each phase's latency here as an HdrHistogram interval log (one tag per
    /// phase, 1 s intervals), for HistogramLogAnalyzer.
    #[arg(long, value_name = "FILE")]
    pub hist_log: Option<PathBuf>,
}

/// What is recorded while the drill runs (the interval log), handed back to
/// [`OutputArgs::write`].
#[derive(Default)]
pub struct Recording {
    hist: Option<HistLog>,
}

impl Recording {
    /// For `RunOptions::histograms`.
    pub fn sink(&self) -> Option<Arc<dyn PhaseHistograms>> {
        self.hist.as_ref().map(HistLog::sink)
    }
}

/// `https://hooks.slack.com/services/…`: a webhook's path is its secret, and warnings
/// end up in CI logs.
fn shown(url: &url::Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    let mut segments = url.path_segments().into_iter().flatten();
    if let Some(first) = segments.next().filter(|f| !f.is_empty()) {
        s.push('/');
        s.push_str(first);
        if segments.next().is_some() || url.query().is_some() {
            s.push_str("/…");
        }
    }
    s
}

impl OutputArgs {
    /// The flags set, by name (for refusing them where they do not apply).
    pub fn given(&self) -> Vec<&'static str> {
        [
            (self.report.is_some(), "--report"),
            (self.junit.is_some(), "--junit"),
            (!self.notify.is_empty(), "--notify"),
            (self.hist_log.is_some(), "--hist-log"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| f)
        .collect()
    }

    /// Before the drill: every file can be written, every webhook URL is an http(s)
    /// URL.
    pub fn check(&self) -> CliResult<()> {
        for (p, what) in [
            (&self.report, "--report"),
            (&self.junit, "--junit"),
            (&self.hist_log, "--hist-log"),
        ] {
            if let Some(p) = p {
                check_writable_as(p, what)?;
            }
        }
        for u in &self.notify {
            notify::parse_url(u).map_err(|e| Failure::input(anyhow!("--notify: {e}")))?;
        }
        Ok(())
    }

    /// Just before the drill: opens the interval log (`title`: what runs).
    pub fn start(&self, title: &str) -> CliResult<Recording> {
        let hist = match &self.hist_log {
            Some(p) => {
                let f = File::create(p).map_err(|e| {
                    Failure::input(anyhow!("cannot write --hist-log {}: {e}", p.display()))
                })?;
                Some(HistLog::start(BufWriter::new(f), title))
            }
            None => None,
        };
        Ok(Recording { hist })
    }

    /// After the drill: writes the files and posts the webhooks. A file that cannot be
    /// written is an error (exit 3) reported after the others were written; a webhook
    /// that fails is a warning on `err`.
    pub fn write(&self, rec: Recording, j: &Journal, err: &mut dyn Write) -> CliResult<()> {
        let mut failed: Vec<String> = Vec::new();
        if let Some(p) = &self.report {
            match super::report::write_html(j, &[], p, &mut std::io::sink()) {
                Ok(size) => {
                    let _ = writeln!(err, "report: {} ({} KiB)", p.display(), size.div_ceil(1024));
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        if let (Some(h), Some(p)) = (rec.hist, &self.hist_log)
            && let Err(e) = h.finish()
        {
            failed.push(format!("cannot write --hist-log {}: {e}", p.display()));
        }
        if let Some(p) = &self.junit {
            let written = File::create(p)
                .map_err(junit::JunitError::from)
                .and_then(|f| junit::write(j, BufWriter::new(f)));
            if let Err(e) = written {
                failed.push(format!("cannot write --junit {}: {e}", p.display()));
            }
        }
        if !self.notify.is_empty() {
            self.post(j, err);
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Failure::target(anyhow!("{}", failed.join("; ")))),
        }
    }

    /// Posts to every `--notify` URL at once (each bounded by [`notify::TIMEOUT`]).
    fn post(&self, j: &Journal, err: &mut dyn Write) {
        let body = notify::payload(j);
        let urls: Vec<url::Url> = self
            .notify
            .iter()
            .filter_map(|u| notify::parse_url(u).ok())
            .collect();
        let results = match super::args::runtime() {
            Ok(rt) => {
                let r = rt.block_on(futures_util::future::join_all(
                    urls.iter().map(|u| notify::post(u, &body)),
                ));
                rt.shutdown_background();
                r
            }
            Err(e) => urls
                .iter()
                .map(|_| Err(notify::NotifyError::Runtime(e.to_string())))
                .collect(),
        };
        for (u, r) in urls.iter().zip(results) {
            if let Err(e) = r {
                let _ = writeln!(err, "warning: --notify {}: {e}", shown(u));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_webhook_secret_stays_out_of_warnings() {
        let u = |s: &str| url::Url::parse(s).expect("a URL");
        assert_eq!(
            shown(&u("https://hooks.slack.com/services/T0/B0/XXXX")),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            shown(&u("http://127.0.0.1:9/hook")),
            "http://127.0.0.1:9/hook"
        );
        assert_eq!(shown(&u("http://127.0.0.1:9/")), "http://127.0.0.1:9");
    }
}
