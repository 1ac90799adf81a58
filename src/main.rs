use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = meshdrill::cli::Cli::parse();
    meshdrill::cli::main(cli)
}
