//! `--mesh DIR` target and `meshdrill mesh ...` commands (the local mesh).

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;

use super::change::TargetArgs;
use super::{CliResult, Failure};
use crate::istio::Change;

/// Applies `change` (or clears, when `None`) to the VirtualService `t.name` of the
/// running local mesh in `dir`.
pub fn apply_change(
    _dir: &Path,
    _t: &TargetArgs,
    _change: Option<&Change>,
    _out: &mut impl Write,
    _err: &mut impl Write,
) -> CliResult {
    Err(Failure::target(anyhow!(
        "--mesh: the local mesh is not built yet; use -f FILE"
    )))
}
