//! The local mesh: VirtualServices run on a real Envoy, with no cluster.
//!
//! What this module owns:
//! - the mesh file format ([`spec`]: `apiVersion: meshdrill.io/v1alpha1, kind: Mesh`, read
//!   together with VirtualServices and DestinationRules);
//! - the translation VirtualService → Envoy configuration, done as istiod does it for
//!   the fields meshdrill supports ([`translate`], pure);
//! - the Envoy process and its file-based xDS with write + rename ([`envoy`]);
//! - the built-in demo service ([`demo`]) and the service replicas ([`process`]);
//! - live changes to a running mesh, from this process or another one through the
//!   state directory ([`control`]), and Envoy's statistics ([`stats`]).
//!
//! What it must not do: print (only `cli` prints), or send traffic anywhere but
//! loopback. Every process it starts dies with the thread that owns the mesh (Linux
//! parent-death signal), a replica's own children with it (its process group, killed by
//! a [`process::GroupGuard`] when this process dies), and is stopped by
//! [`RunningMesh::stop`] or on drop. [`view`] is what `mesh get` shows.
//!
//! In-process use (what `meshdrill demo` does):
//! ```no_run
//! use meshdrill::istio::{AbortCode, AbortSpec, Change, HttpStatus, Percentage, RouteSelector};
//! # fn meta() -> meshdrill::istio::RecordMeta { unimplemented!() }
//! let mesh = meshdrill::mesh::Mesh::start(meshdrill::mesh::demo_mesh()?, Default::default())?;
//! let url = mesh.ingress_url(); // send requests with `Host: repeater.acme.com`
//! let abort = Change::Abort(AbortSpec {
//!     code: AbortCode::Http(HttpStatus::new(500)?),
//!     percentage: Percentage::new(50.0)?,
//! });
//! let applied = mesh.apply("go-demo-8", &RouteSelector::All, Some(&abort), &meta())?;
//! let before = mesh.stats()?;
//! // ... load ...
//! let during = mesh.stats()?.since(&before);
//! mesh.apply("go-demo-8", &RouteSelector::All, None, &meta())?; // clear
//! mesh.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod chain;
pub mod control;
pub mod demo;
pub mod envoy;
mod error;
pub mod gateway;
mod parse;
pub mod process;
pub mod running;
pub mod spec;
pub mod state;
pub mod stats;
pub(crate) mod sys;
pub mod translate;
pub mod view;

pub use control::{Applied, MeshDir};
pub use error::MeshError;
pub use running::{MeshOptions, RunningMesh};
pub use spec::{DemoConfig, Latency, MeshSpec, ServiceSpec, Workload};
pub use stats::MeshStats;

/// The mesh file's `apiVersion`.
pub const API_VERSION: &str = "meshdrill.io/v1alpha1";

/// The two-service demo mesh of `meshdrill demo` (scenarios/meshes/go-demo-8.yaml): the
/// ingress routes to `repeater` (retrying 5xx), which calls `go-demo-8` through its
/// sidecar, where faults go.
pub const DEMO_MESH_YAML: &str = include_str!("../../scenarios/meshes/go-demo-8.yaml");

/// The demo mesh, parsed.
pub fn demo_mesh() -> Result<MeshSpec, MeshError> {
    MeshSpec::parse(DEMO_MESH_YAML, "scenarios/meshes/go-demo-8.yaml").map(|l| l.spec)
}

/// Alias so callers can write `mesh::Mesh::start(spec, opts)`.
pub type Mesh = RunningMesh;

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_mesh_is_valid_and_translates_without_warnings() {
        let spec = super::demo_mesh().expect("demo mesh");
        assert_eq!(spec.service_names(), ["go-demo-8", "repeater"]);
        let layout = super::translate::Layout {
            rds_dir: "/s/rds".into(),
            access_log: "/s/access.log".into(),
            replica_ports: [
                ("go-demo-8".to_string(), vec![1, 2]),
                ("repeater".to_string(), vec![3]),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let c = super::translate::translate(&spec, &layout);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(super::translate::bound_to_ingress(
            &spec.virtual_services[0]
        ));
        assert!(super::translate::bound_to_mesh(&spec.virtual_services[1]));
    }
}
