//! The one integration-test binary: each module covers one capability.

mod common;

mod bad_input;
mod cli_files;
mod cluster;
mod cluster_job;
mod cluster_strict;
mod demo;
mod deploy;
mod experiments;
mod experiments_cluster;
mod fleet;
mod help;
mod istiod_golden;
mod kubectl_habits;
mod load;
mod mesh;
mod mesh_inbound;
mod mesh_outlier;
mod mesh_retry_hosts;
mod mesh_routing;
mod mesh_target;
mod mesh_translate;
mod outputs;
mod prometheus;
mod promises;
mod report;
mod scenarios;
mod subsets;
mod terminal;
mod validate;
