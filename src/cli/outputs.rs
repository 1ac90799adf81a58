//! What a drill writes besides its journal and its text summary (`run` and `demo`):
//! the HTML report, JUnit XML, HdrHistogram interval logs, and the webhook post.
//! The files are checked before the drill starts (a drill whose record cannot be
//! written is not run) and written after it, whatever its verdict.

use std::io::Write;
use std::path::PathBuf;

use super::run::check_writable_as;
use super::{CliResult, Failure};
use crate::scenario::journal::Journal;

/// Flags shared by `run` and `demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write a self-contained HTML report here (verdict, phase timeline with fault
    /// windows, latency and status charts, SLO table, patches); no network needed to
    /// read it.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

impl OutputArgs {
    /// The flags set, by name (for refusing them where they do not apply).
    pub fn given(&self) -> Vec<&'static str> {
        [(self.report.is_some(), "--report")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| f)
            .collect()
    }

    /// Before the drill: every file can be written.
    pub fn check(&self) -> CliResult<()> {
        for (p, what) in [(&self.report, "--report")] {
            if let Some(p) = p {
                check_writable_as(p, what)?;
            }
        }
        Ok(())
    }

    /// After the drill: writes the files. A file that cannot be written is an error
    /// (exit 3) reported after the others were written.
    pub fn write(&self, j: &Journal, err: &mut dyn Write) -> CliResult<()> {
        let mut first: Option<Failure> = None;
        if let Some(p) = &self.report {
            match super::report::write_html(j, &[], p, &mut std::io::sink()) {
                Ok(size) => {
                    let _ = writeln!(err, "report: {} ({} KiB)", p.display(), size.div_ceil(1024));
                }
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}
