use std::io::Write;

use clap::{CommandFactory, Parser};
use clap_complete::Shell;

use super::{Cli, CliResult, Exit};

#[derive(Debug, Parser)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn run(a: CompletionsArgs, out: &mut impl Write) -> CliResult {
    clap_complete::generate(a.shell, &mut Cli::command(), "meshdrill", out);
    Ok(Exit::Ok)
}
