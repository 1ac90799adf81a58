//! The cluster target: VirtualService faults through the Kubernetes API, safely.
//!
//! Owns the only `kube::Client` of meshdrill. It connects as kubectl does (or from the
//! `KUBERNETES_*` variables, see [`connect`]), discovers which `networking.istio.io`
//! version serves VirtualServices, and carries out what [`crate::istio`] plans: a
//! guarded RFC 6902 patch sent as `application/json-patch+json`, never a rewrite of
//! `spec.http`. A failed `test` or a 409 is a [`Error::Conflict`] naming what changed;
//! nothing is forced. Only idempotent reads are retried (429 and 5xx, bounded backoff).
//!
//! It also reads pods and deployments and deletes pods (with a grace period) for the
//! pod experiments and probes, and turns an untrusted server certificate into a
//! failure that says which CA file to set ([`ApiFailure::hint`]).
//!
//! Must not print: it returns values and errors; `cli` shows them.

pub mod connect;
mod deployments;
mod drill;
pub mod job;
mod pods;

use std::fmt;
use std::time::Duration;

pub use crate::istio::{DrillInfo, owner_gone};
pub use connect::ConnectOptions;
pub use deployments::DeploymentInfo;
pub use drill::{Applied, Cleared, VsApi};
pub use pods::{AccessCheck, PodInfo, pick_victims};

/// Writes serialized JSON as Go's encoding/json does: `<`, `>`, `&`, U+2028 and
/// U+2029 as `\u` escapes. These characters occur only inside JSON strings, so the
/// text means the same; byte for byte it matches what the API server stored.
pub fn go_escape(json: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(json) else {
        return json.to_vec();
    };
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

use crate::istio::PlanError;

/// `networking.istio.io`, the group of VirtualServices.
pub const GROUP: &str = "networking.istio.io";
/// Served versions meshdrill knows, most preferred first.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// Errors of the cluster target, one variant per operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connection setting (variable, flag or kubeconfig entry) cannot be used.
    #[error("{origin}: {reason}")]
    Settings { origin: String, reason: String },
    /// Discovery of `networking.istio.io` failed.
    #[error("cannot discover {GROUP} on {server}: {failure}")]
    Discover {
        server: String,
        failure: Box<ApiFailure>,
    },
    /// No served version of `networking.istio.io` has VirtualServices.
    #[error(
        "{server} serves no VirtualService API ({GROUP} versions served: {served}); is Istio installed?"
    )]
    NoVirtualServiceApi { server: String, served: String },
    /// Reading one VirtualService failed.
    #[error("cannot get VirtualService {namespace}/{name}: {failure}")]
    GetVirtualService {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
    },
    /// Listing VirtualServices failed.
    #[error("cannot list VirtualServices in {scope}: {failure}")]
    ListVirtualServices {
        scope: String,
        failure: Box<ApiFailure>,
    },
    /// The patch failed (and no concurrent change explains it); `outcome` says whether
    /// the object is known to be unchanged.
    #[error("cannot patch VirtualService {namespace}/{name}: {failure}; {outcome}")]
    PatchVirtualService {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
        outcome: String,
    },
    /// The PATCH got no answer in time (or a 5xx) and the object does not show the
    /// change yet; the server may still apply it.
    #[error("cannot patch VirtualService {namespace}/{name}: {failure}; {detail}")]
    MayStillApply {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
        /// The run id of the record the change carries, to find it if it lands.
        run_id: String,
        detail: String,
    },
    /// A signal came before the patch was sent.
    #[error(
        "VirtualService {namespace}/{name}: interrupted before the patch was sent; nothing was changed"
    )]
    Interrupted { namespace: String, name: String },
    /// Someone else changed what meshdrill was about to change.
    #[error(
        "VirtualService {namespace}/{name}: conflict: {detail}; nothing was changed. Inspect the object, then re-run (`meshdrill clear {name} -n {namespace} --force` restores meshdrill's fields over an edit of them)"
    )]
    Conflict {
        namespace: String,
        name: String,
        detail: String,
    },
    /// The change cannot be planned on the object as it is.
    #[error(transparent)]
    Plan(PlanError),
    /// Listing pods failed.
    #[error("cannot list pods in {namespace} with selector {selector:?}: {failure}")]
    ListPods {
        namespace: String,
        selector: String,
        failure: Box<ApiFailure>,
    },
    /// Deleting a pod failed.
    #[error("cannot delete pod {namespace}/{name}: {failure}")]
    DeletePod {
        namespace: String,
        name: String,
        failure: Box<ApiFailure>,
    },
    /// Reading deployments (one by name, or a list) failed.
    #[error(
        "cannot read deployments in {namespace}{}: {failure}",
        deployment_scope(name.as_deref(), selector.as_deref())
    )]
    ListDeployments {
        namespace: String,
        name: Option<String>,
        selector: Option<String>,
        failure: Box<ApiFailure>,
    },
    /// A SelfSubjectAccessReview failed.
    #[error("cannot review access to {verb} {resource}: {failure}")]
    AccessReview {
        verb: String,
        resource: String,
        failure: Box<ApiFailure>,
    },
}

impl Error {
    /// The HTTP status the API server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Discover { failure, .. }
            | Error::GetVirtualService { failure, .. }
            | Error::ListVirtualServices { failure, .. }
            | Error::PatchVirtualService { failure, .. }
            | Error::MayStillApply { failure, .. }
            | Error::ListPods { failure, .. }
            | Error::DeletePod { failure, .. }
            | Error::ListDeployments { failure, .. }
            | Error::AccessReview { failure, .. } => failure.status,
            _ => None,
        }
    }

    /// Worth another try of a rollback: a 429, a 5xx, or no answer at all (a
    /// re-read, re-planned, guarded patch cannot apply twice).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Discover { failure, .. }
            | Error::GetVirtualService { failure, .. }
            | Error::ListVirtualServices { failure, .. }
            | Error::PatchVirtualService { failure, .. }
            | Error::MayStillApply { failure, .. } => {
                failure.status.is_none_or(|c| c == 429 || c >= 500)
            }
            _ => false,
        }
    }

    /// True when the user's input (not the cluster) is at fault: no such route etc.
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Plan(e) if e.is_input())
    }
}

/// ` (name x, selector "a=b")` for [`Error::ListDeployments`].
fn deployment_scope(name: Option<&str>, selector: Option<&str>) -> String {
    match (name, selector) {
        (None, None) => String::new(),
        (Some(n), None) => format!(" (name {n})"),
        (None, Some(s)) => format!(" (selector {s:?})"),
        (Some(n), Some(s)) => format!(" (name {n}, selector {s:?})"),
    }
}

/// What the API server said (a `Status`), or why no answer came.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The `Status` reason (`Forbidden`, `NotFound`, ...), empty when unknown.
    pub reason: String,
    /// The `Status` message, or the transport error chain.
    pub message: String,
    /// Where the connection settings came from (for transport errors).
    pub via: Option<String>,
    /// The `Status` causes (`field: message`) the message does not already say.
    pub causes: Vec<String>,
    /// The fields the `Status` causes name (all of them, said or not).
    pub fields: Vec<String>,
    /// What to do about it, when meshdrill knows (e.g. which CA file to set when the
    /// server certificate is not trusted).
    pub hint: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(code) if self.reason.is_empty() => write!(f, "HTTP {code}: {}", self.message)?,
            Some(code) => write!(f, "HTTP {code} {}: {}", self.reason, self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if !self.causes.is_empty() {
            write!(f, " ({})", self.causes.join("; "))?;
        }
        if let Some(v) = &self.via {
            write!(f, " (connection settings from {v})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n{h}")?;
        }
        Ok(())
    }
}

impl ApiFailure {
    fn from_kube(e: &kube::Error, via: &str) -> Self {
        match e {
            kube::Error::Api(s) => Self {
                status: Some(s.code),
                reason: s.reason.clone(),
                message: if s.message.is_empty() {
                    "(no message)".into()
                } else {
                    s.message.clone()
                },
                // The credentials were refused: say which ones.
                // Refused credentials (401), or none at all (403 as system:anonymous):
                // say where the settings came from.
                via: (s.code == 401 || (s.code == 403 && s.message.contains("system:anonymous")))
                    .then(|| via.to_string()),
                causes: s
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .filter(|c| !c.message.is_empty() && !s.message.contains(&c.message))
                    .map(|c| {
                        if c.field.is_empty() {
                            c.message.clone()
                        } else {
                            format!("{}: {}", c.field, c.message)
                        }
                    })
                    .collect(),
                fields: s
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .filter(|c| !c.field.is_empty())
                    .map(|c| c.field.clone())
                    .collect(),
                hint: None,
            },
            other => {
                let mut msg = other.to_string();
                let mut src = std::error::Error::source(other);
                while let Some(s) = src {
                    let t = s.to_string();
                    if !msg.contains(&t) {
                        msg.push_str(": ");
                        msg.push_str(&t);
                    }
                    src = s.source();
                }
                Self {
                    status: None,
                    reason: String::new(),
                    message: msg,
                    via: Some(via.to_string()),
                    causes: Vec::new(),
                    fields: Vec::new(),
                    hint: None,
                }
            }
        }
    }

    /// 409, or 422 (a failed JSON Patch `test` answers 422 Invalid).
    fn maybe_conflict(&self) -> bool {
        matches!(self.status, Some(409 | 422))
    }
}

/// The server certificate was not trusted (signed by no CA meshdrill was given): a
/// rustls `UnknownIssuer` or `BadSignature` anywhere in
/// the chain (an `io::Error` is looked into, since its `source()` skips what it wraps).
/// A name mismatch or an expired certificate is not: another CA would not fix it.
fn untrusted_server_cert(e: &kube::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
        )) = s.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        src = match s.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    false
}

/// Retryable for an idempotent read: 429, 5xx, or a transport timeout/reset.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        other => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(other);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    return matches!(
                        io.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                    );
                }
                if s.to_string().contains("timed out") {
                    return true;
                }
                src = s.source();
            }
            false
        }
    }
}

/// Runs an idempotent read, retrying 429/5xx/timeouts up to 3 times (0.2s, 0.4s, 0.8s).
async fn read_with_retry<T, F, Fut>(mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    const RETRIES: u32 = 3;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if attempt < RETRIES && retryable(&e) => {
                tracing::info!("retrying a read after: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// A connected cluster.
pub struct Cluster {
    client: kube::Client,
    /// The API server URL.
    pub server: String,
    /// Where the settings came from (variables, kubeconfig file and context, in-cluster).
    pub origin: String,
    /// Who we are, as far as the settings say.
    pub user: String,
    /// The namespace to use when none is given.
    pub namespace: String,
    /// Things the user should know (e.g. TLS verification off).
    pub warnings: Vec<String>,
    /// Added to a failure whose cause is an untrusted server certificate.
    tls_hint: Option<String>,
}

impl Cluster {
    /// Reads the settings and builds a client (no request is sent yet).
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, Error> {
        Self::connect_with(opts, &|k| std::env::var(k).ok()).await
    }

    /// [`Cluster::connect`] with the variables looked up by `env` instead of the
    /// process environment (e.g. experiment secrets first, then the environment).
    pub async fn connect_with(
        opts: &ConnectOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let s = connect::resolve(opts, env).await?;
        let client = kube::Client::try_from(s.config).map_err(|e| Error::Settings {
            origin: s.origin.clone(),
            reason: format!(
                "cannot build a client: {}",
                ApiFailure::from_kube(&e, &s.origin).message
            ),
        })?;
        Ok(Self {
            client,
            server: s.server,
            origin: s.origin,
            user: s.user,
            namespace: s.namespace,
            warnings: s.warnings,
            tls_hint: s.tls_hint,
        })
    }

    fn failure(&self, e: &kube::Error) -> Box<ApiFailure> {
        let mut f = ApiFailure::from_kube(e, &self.origin);
        if untrusted_server_cert(e) {
            f.hint = self.tls_hint.clone();
        }
        Box::new(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escape_writes_what_go_stores_and_means_the_same() {
        let v = serde_json::json!({"regex": "(?P<v>.+)", "h": "a&b", "s": "x\u{2028}y\u{2029}"});
        let text = go_escape(v.to_string().as_bytes());
        let text = String::from_utf8(text).expect("utf-8");
        assert_eq!(
            text,
            r#"{"regex":"(?P\u003cv\u003e.+)","h":"a\u0026b","s":"x\u2028y\u2029"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(back, v);
    }
}
