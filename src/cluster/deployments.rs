//! Deployments, read-only: replica counts and the `Available` condition, for probes
//! that ask whether a workload is healthy (chaosk8s' `deployment_available_and_healthy`
//! and friends).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};

use super::{Cluster, Error, read_with_retry};

/// One deployment as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentInfo {
    pub name: String,
    pub namespace: String,
    /// `spec.replicas` (the API's default, 1, when unset).
    pub replicas: i32,
    /// `status.availableReplicas` (0 when unset).
    pub available: i32,
    /// `status.readyReplicas` (0 when unset).
    pub ready: i32,
    /// `status.updatedReplicas` (0 when unset).
    pub updated: i32,
    /// The `Available` condition: `Some(true)` when `True`, `Some(false)` when `False`
    /// or `Unknown`, `None` when the deployment has no such condition (yet).
    pub available_condition: Option<bool>,
    pub labels: BTreeMap<String, String>,
}

impl DeploymentInfo {
    fn from_deployment(d: Deployment, ns: &str) -> Option<Self> {
        let meta = d.metadata;
        let status = d.status.unwrap_or_default();
        Some(Self {
            name: meta.name?,
            namespace: meta.namespace.unwrap_or_else(|| ns.to_string()),
            replicas: d.spec.replicas.unwrap_or(1),
            available: status.available_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available_condition: status
                .conditions
                .unwrap_or_default()
                .iter()
                .find(|c| c.type_.as_deref() == Some("Available"))
                .map(|c| c.status.as_deref() == Some("True")),
            labels: meta.labels.unwrap_or_default(),
        })
    }
}

impl Cluster {
    /// Deployments in `ns`: the one called `name` when given, those matching
    /// `label_selector` when given (both: the named one if it also matches), in the
    /// order the API server lists them.
    ///
    /// A `name` that does not exist gives an empty list, as a selector that matches
    /// nothing does: the caller decides whether that is a failure.
    pub async fn deployments(
        &self,
        ns: &str,
        name: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<DeploymentInfo>, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let err = |e: &kube::Error| Error::ListDeployments {
            namespace: ns.into(),
            name: name.map(str::to_string),
            selector: label_selector.map(str::to_string),
            failure: self.failure(e),
        };
        let items = match (name, label_selector) {
            (Some(n), None) => match read_with_retry(|| api.get_opt(n)).await {
                Ok(d) => d.into_iter().collect(),
                Err(e) => return Err(err(&e)),
            },
            (_, sel) => {
                let mut lp = ListParams::default();
                if let Some(sel) = sel {
                    lp = lp.labels(sel);
                }
                read_with_retry(|| api.list(&lp))
                    .await
                    .map_err(|e| err(&e))?
                    .items
                    .into_iter()
                    .filter(|d| name.is_none_or(|n| d.metadata.name.as_deref() == Some(n)))
                    .collect::<Vec<_>>()
            }
        };
        Ok(items
            .into_iter()
            .filter_map(|d| DeploymentInfo::from_deployment(d, ns))
            .collect())
    }
}
