use std::io::Write;

use clap::Parser;

use super::{CliResult, Failure};

#[derive(Debug, Parser)]
pub struct DemoArgs {}

pub fn run(_a: DemoArgs, out: &mut impl Write, _err: &mut impl Write) -> CliResult {
    let _ = writeln!(
        out,
        "meshdrill demo will: start a two-service local mesh (repeater -> go-demo-8) on a real Envoy,\n\
         measure steady load, inject a 50% abort live, measure again, clear it, and show recovery."
    );
    Err(Failure::input(anyhow::anyhow!(
        "the local mesh is not built yet, so the demo cannot run; `meshdrill fault ... -f FILE` works on manifest files today"
    )))
}
