//! Reading a scenario file into a [`Scenario`], with the file, line and field of every
//! problem. Nothing is started before the whole file is known to be valid.

use std::path::Path;

use super::model::Scenario;
use crate::istio::manifest::{Document, ManifestError};
use crate::mesh::MeshSpec;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read or is not YAML/JSON.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The file holds no `kind: Scenario` document (or more than one).
    #[error("{source_name}: {message}")]
    NotAScenario {
        source_name: String,
        message: String,
    },
    /// A field is missing, unknown or has a value that cannot be used.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// `file:line`.
        location: String,
        /// The dotted field path (`spec.method[2].hold.duration`).
        field: String,
        message: String,
    },
}

/// Whether a document is a scenario (`kind: Scenario` of [`super::API_VERSION`]'s group).
pub fn is_scenario(doc: &Document) -> bool {
    doc.kind() == super::KIND && doc.api_version().starts_with("meshdrill.io/")
}

/// Reads and checks the one scenario in `path`. A relative mesh file in
/// `spec.target.mesh` resolves against `path`'s directory.
pub fn parse_file(path: &Path) -> Result<Scenario, ScenarioError> {
    todo!("{}", path.display())
}

/// Checks one `kind: Scenario` document; `base` is the directory relative paths
/// resolve against.
pub fn parse_document(doc: &Document, base: &Path) -> Result<Scenario, ScenarioError> {
    todo!("{} {}", doc.name(), base.display())
}

/// Checks the scenario against the mesh it will run on: every VirtualService a step
/// names exists there (in its namespace), every service a kill or restart names is a
/// mesh service and every replica index exists.
pub fn check_against_mesh(s: &Scenario, mesh: &MeshSpec) -> Result<(), ScenarioError> {
    todo!("{} {}", s.name, mesh.name)
}
