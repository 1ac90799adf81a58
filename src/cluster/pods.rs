//! Pods (the terminate-pod experiment) and access reviews (`cluster check`).

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
    /// Pods in `ns` matching `selector` that are not already terminating.
    pub async fn list_pods(&self, ns: &str, selector: &str) -> Result<Vec<String>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default().labels(selector);
        let list = read_with_retry(|| api.list(&lp))
            .await
            .map_err(|e| Error::ListPods {
                namespace: ns.into(),
                selector: selector.into(),
                failure: self.failure(&e),
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect())
    }

    /// Deletes one pod (its controller starts a new one); never retried.
    pub async fn delete_pod(&self, ns: &str, name: &str) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.delete(name, &DeleteParams::default())
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
