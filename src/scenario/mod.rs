//! Drills as files: the scenario format ([`model`], read by [`parse`]), and the runner
//! that carries one out — steady state, method, stop conditions, rollback, verdict.
//!
//! What it owns: the lifecycle of a drill, for every caller (`meshdrill run`, `demo`,
//! `fault … --wait`). What it must not do: print (it reports events to the caller).

mod collect;
mod dryrun;
pub mod journal;
pub mod model;
mod parse;
mod promql;
mod rollback;
pub mod runner;
mod search;
mod steps;
mod verdict;

pub use collect::PhaseHistograms;
pub use journal::{DrillVerdict, Ending, Journal};
pub use model::*;
pub use parse::{ScenarioError, check_against_mesh, is_scenario, parse_document, parse_file};
pub use runner::{Event, Observer, RollbackStrategy, RunOptions, run};
pub use verdict::{ending_text, planned_length};
