//! Pods and deployments as chaosk8s sees them, on either target: a cluster's pods, or
//! the replicas of a local mesh (a replica is the pod `SERVICE-N`, carrying its
//! service entry's labels plus `app: SERVICE` unless the entry sets `app`; a killed
//! replica is a Pending pod until it is restarted).

use std::collections::BTreeMap;

use crate::mesh::state::MeshState;

/// A pod, target-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub name: String,
    pub phase: String,
    pub created: Option<jiff::Timestamp>,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    /// On a mesh: (service, replica index).
    pub replica: Option<(String, usize)>,
}

/// A deployment, target-neutral: how many replicas it wants and has available.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    pub replicas: i64,
    pub available: i64,
    pub labels: BTreeMap<String, String>,
}

impl Deployment {
    pub fn healthy(&self) -> bool {
        self.available >= self.replicas && self.replicas > 0
    }
}

/// One requirement of a Kubernetes label selector.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A Kubernetes label selector (`app=a,tier!=db,env in (x,y),!canary`).
#[derive(Debug, Clone, PartialEq)]
pub struct Selector(Vec<Req>);

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |m: &str| format!("label selector {s:?}: {m}");
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut cur) = (0i32, String::new());
        for c in s.chars() {
            match c {
                '(' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        if depth != 0 {
            return Err(bad("unbalanced parentheses"));
        }
        parts.push(cur);
        let valid = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        };
        let mut reqs = Vec::new();
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                if s.trim().is_empty() {
                    continue;
                }
                return Err(bad("empty requirement"));
            }
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let r = rest.trim();
                let inner = r
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad("a set is written (a,b)"))?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
            };
            let req = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set(rest)?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Req::In(k.trim().into(), set(rest)?)
            } else {
                Req::Exists(p.to_string())
            };
            let key = match &req {
                Req::Eq(k, _)
                | Req::Ne(k, _)
                | Req::In(k, _)
                | Req::NotIn(k, _)
                | Req::Exists(k)
                | Req::NotExists(k) => k,
            };
            if !valid(key) {
                return Err(bad(&format!("{key:?} is not a label key")));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::Ne(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// The replicas of a mesh, as pods: a live one Running; a killed one Pending and not
/// ready, as the replacement a Deployment starts for a deleted pod is until it is up.
pub fn mesh_pods(st: &MeshState) -> Vec<Pod> {
    st.replicas
        .iter()
        .map(|r| Pod {
            name: format!("{}-{}", r.service, r.index),
            phase: if r.process.is_some() {
                "Running".into()
            } else {
                "Pending".into()
            },
            created: None,
            ready: r.process.is_some(),
            labels: replica_labels(st, &r.service, r.index),
            replica: Some((r.service.clone(), r.index)),
        })
        .collect()
}

fn replica_labels(st: &MeshState, service: &str, index: usize) -> BTreeMap<String, String> {
    let mut labels = st
        .spec
        .replicas_of(service)
        .get(index)
        .map(|(entry, _)| entry.labels.clone())
        .unwrap_or_default();
    labels
        .entry("app".into())
        .or_insert_with(|| service.to_string());
    labels
}

/// The mesh's services as deployments (one per service name).
pub fn mesh_deployments(st: &MeshState) -> Vec<Deployment> {
    let mut out: Vec<Deployment> = Vec::new();
    for r in &st.replicas {
        let d = match out.iter_mut().find(|d| d.name == r.service) {
            Some(d) => d,
            None => {
                out.push(Deployment {
                    name: r.service.clone(),
                    replicas: 0,
                    available: 0,
                    labels: replica_labels(st, &r.service, r.index),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        d.replicas += 1;
        if r.process.is_some() {
            d.available += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let l = labels(&[("app", "go-demo-8"), ("release", "primary")]);
        for (s, want) in [
            ("app=go-demo-8", true),
            ("app==go-demo-8", true),
            ("app=other", false),
            ("app!=other", true),
            ("app=go-demo-8,release=primary", true),
            ("app=go-demo-8,release=canary", false),
            ("release in (primary, canary)", true),
            ("release notin (primary)", false),
            ("release", true),
            ("!canary", true),
            ("!release", false),
            ("", true),
        ] {
            assert_eq!(Selector::parse(s).expect(s).matches(&l), want, "{s}");
        }
        assert!(Selector::parse("release in (a").is_err());
        assert!(Selector::parse("a=b,,c=d").is_err());
    }
}
