//! meshdrill: resilience drills for Istio/Envoy.
//!
//! Data flows one way: CLI → spec ([`istio`]) → patch → target (`cluster` | `mesh`);
//! `load` → histogram → `slo` → verdict → `report`. Only [`cli`] prints.

pub mod cancel;
pub mod cli;
pub mod cluster;
pub mod experiment;
pub mod fleet;
pub mod istio;
pub mod load;
pub mod mesh;
pub mod prometheus;
pub mod report;
pub mod scenario;
pub mod slo;
pub mod target;
