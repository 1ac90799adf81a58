//! `meshdrill report JOURNAL`: a drill's journal as the text summary, or as the
//! self-contained HTML page (`--html FILE`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Parser;

use super::{CliResult, Exit, Failure, io_err};
use crate::report::read::Loaded;
use crate::scenario::journal::Journal;

#[derive(Debug, Parser)]
#[command(
    after_help = "A journal that is cut short, damaged or from another version is read as far as \
it goes: the report is still written, says it is incomplete and why, and the exit code is 2. \
Exit codes: 0 the report was written from a whole journal, 2 the journal is incomplete (report \
written) or not a journal (nothing written), 3 the report cannot be written."
)]
pub struct ReportArgs {
    /// The journal of a drill (`meshdrill run SCENARIO --journal FILE`, `meshdrill demo
    /// --journal FILE`).
    pub journal: PathBuf,
    /// Write the HTML report here (`-` for stdout) instead of printing the text summary.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
}

pub fn run(a: ReportArgs, out: &mut impl Write, err: &mut impl Write) -> CliResult {
    // A journal that cannot be read is the user's input, whatever the reason.
    let Loaded { journal, problems } =
        crate::report::read::read(&a.journal).map_err(Failure::input)?;
    for p in &problems {
        writeln!(err, "warning: {}: {p}", a.journal.display()).map_err(io_err)?;
    }
    match &a.html {
        Some(path) => {
            let size = write_html(&journal, &problems, path, out)?;
            if path != Path::new("-") {
                writeln!(
                    err,
                    "report: {} ({} KiB)",
                    path.display(),
                    size.div_ceil(1024)
                )
                .map_err(io_err)?;
            }
        }
        None => {
            let paint = super::term::Paint {
                on: super::term::stdout_colour(),
            };
            super::drill::write_summary(out, &journal, paint).map_err(io_err)?
        }
    }
    if problems.is_empty() {
        Ok(Exit::Ok)
    } else {
        Err(Failure::input(anyhow!(
            "{}: the journal is incomplete ({} problem(s) above); the report shows what it holds",
            a.journal.display(),
            problems.len()
        )))
    }
}

/// Renders the page and writes it to `path` (`-`: `out`); returns its size in bytes.
pub fn write_html(
    j: &Journal,
    problems: &[String],
    path: &Path,
    out: &mut impl Write,
) -> CliResult<usize> {
    let page = crate::report::html::render(j, problems)
        .map_err(|e| Failure::target(anyhow!("cannot render the report: {e}")))?;
    if path == Path::new("-") {
        out.write_all(page.as_bytes()).map_err(io_err)?;
    } else {
        std::fs::write(path, &page).map_err(|e| {
            Failure::target(anyhow!("cannot write the report {}: {e}", path.display()))
        })?;
    }
    Ok(page.len())
}
