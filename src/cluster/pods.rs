//! Pods (the terminate-pod experiment) and access reviews (`cluster check`).
//!
//! [`Cluster::pods`] lists pods as the API server returns them — its order, terminating
//! and pending pods included — for callers that choose victims themselves (chaosk8s'
//! `terminate_pods` has no phase filter); [`Cluster::list_pods`] is the meshdrill view
//! (running names only).

use std::collections::BTreeMap;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use rand::seq::SliceRandom;

use super::{Cluster, Error, GROUP, read_with_retry};

/// The answer of a SelfSubjectAccessReview.
#[derive(Debug, Clone)]
pub struct AccessCheck {
    pub verb: String,
    pub allowed: bool,
    /// The authorizer's reason (or denial), when it gave one.
    pub reason: String,
}

/// One pod as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`); empty
    /// when the server gave none.
    pub phase: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<jiff::Timestamp>,
    /// `metadata.deletionTimestamp` is set: the pod is terminating.
    pub deleting: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
}

impl PodInfo {
    fn from_pod(p: Pod, ns: &str) -> Option<Self> {
        let meta = p.metadata;
        let status = p.status.unwrap_or_default();
        Some(Self {
            name: meta.name?,
            namespace: meta.namespace.unwrap_or_else(|| ns.to_string()),
            phase: status.phase.unwrap_or_default(),
            created: meta.creation_timestamp.map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            ready: status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            labels: meta.labels.unwrap_or_default(),
        })
    }
}

/// Chooses which of `candidates` to kill: `count` of them, or `percent` (rounded up,
/// at least one), at random. Never more than there are.
pub fn pick_victims(
    mut candidates: Vec<String>,
    count: Option<usize>,
    percent: Option<f64>,
) -> Vec<String> {
    let n = candidates.len();
    let want = match (count, percent) {
        (Some(c), _) => c,
        (None, Some(p)) => {
            let share = (n as f64 * p.clamp(0.0, 100.0) / 100.0).ceil();
            (share as usize).max(1)
        }
        (None, None) => 1,
    }
    .min(n);
    candidates.shuffle(&mut rand::rng());
    candidates.truncate(want);
    candidates.sort();
    candidates
}

impl Cluster {
    /// Pods in `ns` matching `label_selector` (every pod when `None`), in the order the
    /// API server lists them, terminating and pending pods included. The selector is
    /// passed to the server as is: a malformed one is its 400 (no client-side parse).
    pub async fn pods(
        &self,
        ns: &str,
        label_selector: Option<&str>,
    ) -> Result<Vec<PodInfo>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut lp = ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        let list = read_with_retry(|| api.list(&lp))
            .await
            .map_err(|e| Error::ListPods {
                namespace: ns.into(),
                selector: label_selector.unwrap_or_default().into(),
                failure: self.failure(&e),
            })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| PodInfo::from_pod(p, ns))
            .collect())
    }

    /// Names of the pods in `ns` matching `selector` that are not already terminating.
    pub async fn list_pods(&self, ns: &str, selector: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .pods(ns, Some(selector))
            .await?
            .into_iter()
            .filter(|p| !p.deleting)
            .map(|p| p.name)
            .collect())
    }

    /// Deletes one pod with its own grace period (its controller starts a new one);
    /// never retried.
    pub async fn delete_pod(&self, ns: &str, name: &str) -> Result<(), Error> {
        self.delete_pod_grace(ns, name, None).await
    }

    /// Deletes one pod, waiting `grace_seconds` for it to stop (`Some(0)`: at once),
    /// or its own `terminationGracePeriodSeconds` when `None`; never retried.
    pub async fn delete_pod_grace(
        &self,
        ns: &str,
        name: &str,
        grace_seconds: Option<u32>,
    ) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: grace_seconds,
            ..DeleteParams::default()
        };
        api.delete(name, &dp)
            .await
            .map(|_| ())
            .map_err(|e| Error::DeletePod {
                namespace: ns.into(),
                name: name.into(),
                failure: self.failure(&e),
            })
    }

    /// May this identity `verb` VirtualServices in `ns`? (SelfSubjectAccessReview)
    pub async fn can_i(&self, verb: &str, ns: &str) -> Result<AccessCheck, Error> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.into()),
                    resource: Some("virtualservices".into()),
                    verb: Some(verb.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Error::AccessReview {
                verb: verb.into(),
                resource: format!("virtualservices.{GROUP}"),
                failure: self.failure(&e),
            })?;
        let status = answer.status.unwrap_or_default();
        Ok(AccessCheck {
            verb: verb.into(),
            allowed: status.allowed,
            reason: status
                .reason
                .or(status.evaluation_error)
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn victims_by_count_and_percent() {
        assert_eq!(pick_victims(names(5), Some(2), None).len(), 2);
        assert_eq!(pick_victims(names(5), Some(9), None).len(), 5);
        assert_eq!(pick_victims(names(5), None, Some(50.0)).len(), 3);
        assert_eq!(pick_victims(names(5), None, Some(1.0)).len(), 1);
        assert_eq!(pick_victims(names(5), None, None).len(), 1);
        assert!(pick_victims(Vec::new(), None, Some(100.0)).is_empty());
    }
}
