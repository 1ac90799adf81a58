//! Running chaostoolkit experiment files unchanged, with chaostoolkit's semantics and
//! meshdrill's guarantees: `meshdrill run experiment.yaml` on a cluster or, with
//! `--mesh`, on the local mesh.
//!
//! What it owns: the experiment format ([`load`]: shape, configuration, secrets,
//! `${name}` substitution, `ref`s, tolerances), the providers (http requests,
//! processes, a siege command line mapped to meshdrill's load engine, and the
//! chaostoolkit-istio / chaostoolkit-kubernetes functions mapped to guarded changes on
//! the target), the run order ([`run`]) and chaostoolkit's journal ([`journal`]).
//! What it must not do: print (the CLI does), or change anything before the whole file
//! is known to be usable.
//!
//! Where meshdrill differs on purpose (each said in the run output when it matters):
//! a failed action fails the run and stops the method; a steady state that does not
//! hold before the method exits 1; the rollbacks default to `always`; every change
//! meshdrill made is undone at the end whatever the rollbacks did (unless
//! `--keep-faults`); a delay and an abort on one route are both kept; `remove_*`
//! removes only that kind and only what the run added; a route list or pod selector
//! that matches nothing is a failure.

pub mod http;
pub mod journal;
pub mod load;
pub mod model;
pub mod pods;
pub mod run;
pub mod siege;
pub mod substitute;
pub mod tolerance;

pub use load::{ExperimentError, LoadOptions, file_is_experiment, load, parse_var};
pub use model::{Experiment, HypothesisStrategy, RollbackStrategy};
pub use run::{Event, Exit, Observer, RunOptions, run};
