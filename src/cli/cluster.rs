//! The cluster target (default when neither -f nor --mesh is given) and cluster commands.

use std::io::Write;

use anyhow::anyhow;

use super::change::TargetArgs;
use super::{CliResult, Failure};
use crate::istio::Change;

/// Applies `change` (or clears, when `None`) to the VirtualService `t.name` on the
/// cluster.
pub fn apply_change(
    _t: &TargetArgs,
    _change: Option<&Change>,
    _out: &mut impl Write,
    _err: &mut impl Write,
) -> CliResult {
    Err(Failure::target(anyhow!(
        "the cluster target is not built yet; use -f FILE"
    )))
}
