//! A fake Kubernetes API server: real HTTP/1.1 over TLS on 127.0.0.1 (port 0), with a
//! CA, server and client certificates made here with rcgen (X.509 v3).
//!
//! It authenticates a client certificate signed by its CA or the bearer token
//! [`FakeKube::TOKEN`] (anything else is 401), serves discovery (`/api`, `/api/v1`,
//! `/apis`, `/apis/networking.istio.io[/<v>]` with configurable versions), stores
//! VirtualServices with a resourceVersion and implements GET, LIST (namespaced and
//! all namespaces), POST, PUT, DELETE and JSON Patch (`application/json-patch+json`,
//! applied with the json-patch crate, `test` ops included), plus pods (list with a
//! `labelSelector` parsed and matched as the apiserver does — a malformed one is a 400
//! — and delete with a grace period from `?gracePeriodSeconds=` or a DeleteOptions
//! body, recorded per deletion), apps/v1 deployments (list by label, get) and
//! SelfSubjectAccessReview. Errors carry the `Status` bodies the real
//! kube-apiserver sends (k8s.io/apimachinery/pkg/api/errors, and
//! apiserver/pkg/endpoints/handlers/patch.go: a failed JSON-patch op is
//! `NewGenericServerResponse(422, ...)`: reason Invalid, a generic message, empty details).
//!
//! Like the real server, it answers with JSON as Go's encoding/json writes it (`<`, `>`,
//! `&`, U+2028, U+2029 escaped as `\u003c`...), and evaluates a JSON Patch `test` as
//! evanphx/json-patch v4 (`lazyNode.equal`) does: objects key by key, arrays item by
//! item, and every scalar by its compacted raw bytes — the stored object's bytes as Go
//! wrote them against the bytes of the `value` as sent. So `"a&b"` sent unescaped does
//! not equal the stored `"a\u0026b"`, as on a real cluster.
//!
//! Hooks: [`FakeKube::fail_next`], [`FakeKube::forbid`], [`FakeKube::edit_vs`] (a change
//! behind meshdrill's back), [`FakeKube::delete_before_next`], [`FakeKube::requests`]
//! (what was sent). Seeding: [`FakeKube::add_pod`], [`FakeKube::add_pod_with`] (phase
//! and creation time), [`FakeKube::mark_terminating`], [`FakeKube::add_deployment`];
//! [`FakeKube::pod_deletions`] lists the grace period of each pod deletion.
//! Rights: [`FakeKube::forbid`] (a verb everywhere), [`FakeKube::role_only_in`] (a
//! namespaced Role: cluster-wide lists and other namespaces are 403).
//!
//! A VirtualService write passes the CRD's structural schema (types of the fields
//! meshdrill writes: 422 with causes) and Istio's validating webhook (400 "admission
//! webhook \"validation.istio.io\" denied the request: ...") before it is stored, as
//! on kube-apiserver before CRD validation ratcheting (1.30): the whole object is
//! checked. In `fake_kube/admission.rs`, with [`FakeKube::webhook_denies_next`] for a
//! stricter policy webhook; [`FakeKube::fail_next_test`] fails a patch's `test`.
//!
//! batch/v1 Jobs, an emulated Job controller and kubelet, pod watch and pod logs are in
//! `fake_kube/jobs.rs` ([`FakeKube::job_fate`], [`FakeKube::job_deletions`],
//! [`FakeKube::forbid_on`] for a 403 on one verb and resource).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::label_selector::Selector;

mod admission;
mod jobs;
pub use jobs::Fate;

const GROUP: &str = "networking.istio.io";
const GR: &str = "virtualservices.networking.istio.io";

/// How a spawned meshdrill authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `KUBERNETES_CERT_FILE` + `KUBERNETES_KEY_FILE`.
    Cert,
    /// `KUBERNETES_API_KEY`.
    Token,
    /// No credentials at all: the server sees `system:anonymous`.
    Anonymous,
}

/// One pod deletion as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDeletion {
    pub namespace: String,
    pub name: String,
    /// The grace period asked for (`None`: the pod's own).
    pub grace_period_seconds: Option<i64>,
}

/// A deployment to seed with [`FakeKube::add_deployment`].
#[derive(Debug, Clone)]
pub struct DeploymentSeed {
    pub name: String,
    pub labels: Value,
    /// `spec.replicas`; `None` leaves it unset.
    pub replicas: Option<i32>,
    pub available: i32,
    pub ready: i32,
    pub updated: i32,
    /// The `Available` condition (`None`: no such condition).
    pub available_condition: Option<bool>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string (empty when none).
    pub query: String,
    pub content_type: String,
    pub user: String,
    pub body: String,
}

#[derive(Debug, Clone)]
struct Failing {
    method: String,
    /// Only requests whose path contains this (None: any path, discovery included).
    path: Option<String>,
    /// Matching requests to let through first (served normally) before this one fails.
    skip: usize,
    status: u16,
    /// Carry the request out anyway, visible only after this long.
    late: Option<std::time::Duration>,
}

/// An edit someone else makes just before the next request with `method` is served.
type Edit = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Default)]
struct State {
    /// (method, path fragment or any, delay).
    delay_next: Vec<(String, Option<String>, std::time::Duration)>,
    edit_before: Vec<(String, String, String, Edit)>,
    delete_before: Vec<(String, String, String)>,
    /// Changes carried out but not yet visible: (when, key, object).
    late: Vec<(std::time::Instant, (String, String), Value)>,
    versions: Vec<String>,
    vs: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    pod_deletions: Vec<PodDeletion>,
    deployments: BTreeMap<(String, String), Value>,
    rv: u64,
    fail_next: Vec<Failing>,
    forbidden: BTreeSet<String>,
    seen: Vec<Seen>,
    jobs: jobs::Jobs,
    /// Webhook denials queued by [`FakeKube::webhook_denies_next`].
    denials: Vec<admission::Denial>,
    /// JSON Patches whose `test` ops fail next ([`FakeKube::fail_next_test`]).
    failing_tests: usize,
    /// The namespaces a Role grants in ([`FakeKube::role_only_in`]); `None`: a
    /// ClusterRole, everywhere.
    role_namespaces: Option<BTreeSet<String>>,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }
}

/// A running fake API server; stopped on drop.
pub struct FakeKube {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// A CA that did not sign the server certificate.
    pub wrong_ca_file: PathBuf,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Pki {
    ca_pem: String,
    wrong_ca_pem: String,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
    };
    let issuer = ca("fake-kube-ca");
    let wrong = ca("some-other-ca");
    let server_key = KeyPair::generate().expect("key");
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    sp.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server = sp.signed_by(&server_key, &issuer).expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cp.distinguished_name
        .push(DnType::CommonName, "drill-admin");
    cp.distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    let client = cp.signed_by(&client_key, &issuer).expect("client cert");
    Pki {
        ca_pem: issuer.pem(),
        wrong_ca_pem: wrong.pem(),
        server_cert: server.der().to_vec(),
        server_key: server_key.serialize_der(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

impl FakeKube {
    /// The bearer token the server accepts.
    pub const TOKEN: &'static str = "fake-kube-token-0123456789";
    /// The user a client certificate authenticates as.
    pub const CERT_USER: &'static str = "drill-admin";
    /// The user the token authenticates as.
    pub const TOKEN_USER: &'static str = "system:serviceaccount:default:meshdrill";

    /// Serves networking.istio.io v1, v1beta1 and v1alpha3.
    pub fn start() -> Self {
        Self::with_versions(&["v1", "v1beta1", "v1alpha3"])
    }

    /// Serves networking.istio.io at these versions only (preferred first).
    pub fn with_versions(versions: &[&str]) -> Self {
        let pki = pki();
        let dir = tempfile::tempdir().expect("tmp");
        let write = |name: &str, s: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, s).expect("write pki");
            p
        };
        let ca_file = write("ca.crt", &pki.ca_pem);
        let wrong_ca_file = write("wrong-ca.crt", &pki.wrong_ca_pem);
        let client_cert_file = write("client.crt", &pki.client_cert_pem);
        let client_key_file = write("client.key", &pki.client_key_pem);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(c.expect("ca pem")).expect("add root");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("client verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(pki.server_cert)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key.into()),
            )
            .expect("server tls config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let state = Arc::new(Mutex::new(State {
            versions: versions.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let st = st.clone();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let has_cert = tls.get_ref().1.peer_certificates().is_some();
                            let svc = hyper::service::service_fn(move |req| {
                                let st = st.clone();
                                async move {
                                    let method = req.method().as_str().to_string();
                                    let path = req.uri().path().to_string();
                                    let resp = handle(st.clone(), has_cert, req).await;
                                    let resp =
                                        match resp.extensions().get::<jobs::Stream>().cloned() {
                                            Some(s) => jobs::respond(st.clone(), s),
                                            None => resp.map(|b| b.boxed()),
                                        };
                                    let delay = {
                                        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                                        s.delay_next
                                            .iter()
                                            .position(|(m, p, _)| {
                                                *m == method
                                                    && p.as_ref()
                                                        .is_none_or(|p| path.contains(p.as_str()))
                                            })
                                            .map(|i| s.delay_next.remove(i).2)
                                    };
                                    if let Some(d) = delay {
                                        tokio::time::sleep(d).await;
                                    }
                                    Ok::<_, Infallible>(resp)
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = rx => {}
                }
            });
        });
        Self {
            addr,
            dir,
            ca_file,
            client_cert_file,
            client_key_file,
            wrong_ca_file,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Points `cmd` at this server with the `KUBERNETES_*` variables.
    pub fn env<'a>(&self, cmd: &'a mut Command, auth: Auth) -> &'a mut Command {
        cmd.env("KUBERNETES_HOST", self.url())
            .env("KUBERNETES_CA_CERT_FILE", &self.ca_file)
            .env("HOME", self.dir.path());
        match auth {
            Auth::Cert => cmd
                .env("KUBERNETES_CERT_FILE", &self.client_cert_file)
                .env("KUBERNETES_KEY_FILE", &self.client_key_file)
                .env_remove("KUBERNETES_API_KEY"),
            Auth::Token => cmd
                .env("KUBERNETES_API_KEY", Self::TOKEN)
                .env_remove("KUBERNETES_CERT_FILE")
                .env_remove("KUBERNETES_KEY_FILE"),
            Auth::Anonymous => cmd
                .env_remove("KUBERNETES_API_KEY")
                .env_remove("KUBERNETES_CERT_FILE")
                .env_remove("KUBERNETES_KEY_FILE"),
        }
    }

    /// Writes a kubeconfig (token auth, CA by file, namespace `ns`) and returns its path.
    pub fn kubeconfig(&self, dir: &Path, ns: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: fake-ctx\n  context:\n    cluster: fake\n    user: drill\n    namespace: {ns}\n- name: other\n  context:\n    cluster: nowhere\n    user: drill\nusers:\n- name: drill\n  user:\n    token: {tok}\n",
            url = self.url(),
            ca = self.ca_file.display(),
            tok = Self::TOKEN,
        );
        let p = dir.join("kubeconfig");
        std::fs::write(&p, text).expect("write kubeconfig");
        p
    }

    /// Stores a VirtualService (as if `kubectl apply`d); returns it as stored.
    pub fn put_vs(&self, obj: Value) -> Value {
        let mut st = self.lock();
        let mut obj = obj;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("metadata.name")
            .to_string();
        let rv = st.next_rv();
        let meta = &mut obj["metadata"];
        meta["namespace"] = json!(ns);
        meta["resourceVersion"] = json!(rv);
        meta["uid"] = json!(format!("uid-{ns}-{name}"));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        st.vs.insert((ns, name), obj.clone());
        obj
    }

    /// The stored VirtualService (with any late change that is due by now).
    pub fn vs(&self, ns: &str, name: &str) -> Option<Value> {
        let mut st = self.lock();
        land_due(&mut st);
        st.vs.get(&(ns.into(), name.into())).cloned()
    }

    /// Changes a VirtualService behind meshdrill's back (bumps resourceVersion).
    pub fn edit_vs(&self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.lock();
        let rv = st.next_rv();
        let obj = st
            .vs
            .get_mut(&(ns.to_string(), name.to_string()))
            .expect("vs to edit");
        f(obj);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Changes a VirtualService behind meshdrill's back just before the next request
    /// with `method` is served: the race a guarded patch must lose safely.
    pub fn edit_before_next(
        &self,
        method: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.lock()
            .edit_before
            .push((method.into(), ns.into(), name.into(), Box::new(f)));
    }

    /// Deletes a VirtualService just before the next request with `method` on that
    /// object (its path ends with `/virtualservices/<name>`) is served.
    pub fn delete_before_next(&self, method: &str, ns: &str, name: &str) {
        self.lock()
            .delete_before
            .push((method.into(), ns.into(), name.into()));
    }

    /// Carries out the next request with `method`, then holds the answer back for `d`:
    /// a client that gives up first does not know that it landed.
    pub fn delay_next(&self, method: &str, d: std::time::Duration) {
        self.lock().delay_next.push((method.into(), None, d));
    }

    /// [`FakeKube::delay_next`] for the next `method` request whose path contains
    /// `path` (e.g. `/virtualservices`), so discovery is not the one delayed.
    pub fn delay_next_on(&self, method: &str, path: &str, d: std::time::Duration) {
        self.lock()
            .delay_next
            .push((method.into(), Some(path.into()), d));
    }

    /// Fails the next request with this method (GET, PATCH, ...) with `status` and the
    /// Status body the API server sends for it.
    pub fn fail_next(&self, method: &str, status: u16) {
        self.lock().fail_next.push(Failing {
            method: method.to_string(),
            path: None,
            skip: 0,
            status,
            late: None,
        });
    }

    /// Lets the next `skip` requests with `method` through, then fails one with
    /// `status` — queued before the command runs, so no race with it. Queued failures
    /// are taken in order: a later one waits until this one has fired.
    pub fn fail_after(&self, method: &str, skip: usize, status: u16) {
        self.lock().fail_next.push(Failing {
            method: method.to_string(),
            path: None,
            skip,
            status,
            late: None,
        });
    }

    /// [`FakeKube::fail_next`] for the next `method` request whose path contains `path`.
    pub fn fail_next_on(&self, method: &str, path: &str, status: u16) {
        self.lock().fail_next.push(Failing {
            method: method.to_string(),
            path: Some(path.to_string()),
            skip: 0,
            status,
            late: None,
        });
    }

    /// Answers the next request with `method` with `status` (e.g. a 504), but carries
    /// it out anyway, visible only `after` later: a server still processing it.
    pub fn fail_next_then_apply(&self, method: &str, status: u16, after: std::time::Duration) {
        self.lock().fail_next.push(Failing {
            method: method.to_string(),
            path: None,
            skip: 0,
            status,
            late: Some(after),
        });
    }

    /// Denies `verb` (get, list, patch, update, create, delete) on everything: 403.
    pub fn forbid(&self, verb: &str) {
        self.lock().forbidden.insert(verb.to_string());
    }

    /// The credentials' rights come from a Role (and RoleBinding) in each of `namespaces`,
    /// not from a ClusterRole: a request on namespaced resources anywhere else, and a
    /// list across all namespaces, is 403 (`... at the cluster scope`), and the access
    /// review answers so. Discovery and access reviews stay allowed, as RBAC's
    /// `system:basic-user` / `system:discovery` grant them to every authenticated user.
    pub fn role_only_in(&self, namespaces: &[&str]) {
        self.lock().role_namespaces = Some(namespaces.iter().map(|n| n.to_string()).collect());
    }

    /// The next JSON Patch with a `test` op fails it, as on a server whose stored bytes
    /// differ from what the client read: the generic 422 kube-apiserver answers.
    pub fn fail_next_test(&self) {
        self.lock().failing_tests += 1;
    }

    /// Adds a running, ready pod with these labels (created 2026-01-01T00:00:00Z).
    pub fn add_pod(&self, ns: &str, name: &str, labels: Value) {
        self.add_pod_with(ns, name, labels, "Running", "2026-01-01T00:00:00Z");
    }

    /// Adds a pod in `phase` (`Running` pods are ready, others not) created at
    /// `created` (RFC 3339).
    pub fn add_pod_with(&self, ns: &str, name: &str, labels: Value, phase: &str, created: &str) {
        let mut st = self.lock();
        let rv = st.next_rv();
        let ready = if phase == "Running" { "True" } else { "False" };
        st.pods.insert(
            (ns.into(), name.into()),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": labels, "resourceVersion": rv,
                                "uid": format!("uid-pod-{name}"), "creationTimestamp": created},
                   "spec": {"containers": [{"name": "app", "image": "app:1"}], "terminationGracePeriodSeconds": 30},
                   "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}}),
        );
    }

    /// Marks a pod as terminating (a deletion under way: `deletionTimestamp` set).
    pub fn mark_terminating(&self, ns: &str, name: &str) {
        let mut st = self.lock();
        let rv = st.next_rv();
        let p = st
            .pods
            .get_mut(&(ns.to_string(), name.to_string()))
            .expect("pod to mark");
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        p["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Every pod deletion so far, in order.
    pub fn pod_deletions(&self) -> Vec<PodDeletion> {
        self.lock().pod_deletions.clone()
    }

    /// Adds an apps/v1 Deployment in `ns`.
    pub fn add_deployment(&self, ns: &str, d: DeploymentSeed) {
        let mut st = self.lock();
        let rv = st.next_rv();
        let mut spec = json!({"selector": {"matchLabels": d.labels.clone()},
                              "template": {"metadata": {"labels": d.labels.clone()},
                                           "spec": {"containers": [{"name": "app", "image": "app:1"}]}}});
        if let Some(r) = d.replicas {
            spec["replicas"] = json!(r);
        }
        let mut status = json!({"observedGeneration": 1, "availableReplicas": d.available,
                                "readyReplicas": d.ready, "updatedReplicas": d.updated});
        if let Some(a) = d.available_condition {
            status["conditions"] = json!([{"type": "Available", "status": if a { "True" } else { "False" },
                                           "reason": if a { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}]);
        }
        st.deployments.insert(
            (ns.into(), d.name.clone()),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": d.name, "namespace": ns, "labels": d.labels, "resourceVersion": rv,
                                "uid": format!("uid-deploy-{ns}-{}", d.name), "generation": 1,
                                "creationTimestamp": "2026-01-01T00:00:00Z"},
                   "spec": spec, "status": status}),
        );
    }

    /// Pod names left in `ns`.
    pub fn pods(&self, ns: &str) -> Vec<String> {
        self.lock()
            .pods
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// === Responses ===

type Resp = Response<Full<Bytes>>;

/// JSON text as Go's encoding/json writes it (HTML-safe escaping, its default).
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    for ch in v.to_string().chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn reply(code: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(go_json(body))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    reply(code, &s)
}

fn details(name: &str, resource: &str, group: &str) -> Value {
    let mut d = json!({"kind": resource});
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// `resource.group` as the apiserver's GroupResource prints it.
fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn not_found(resource: &str, group: &str, name: &str) -> Resp {
    status(
        404,
        "NotFound",
        &format!("{} {name:?} not found", qualified(resource, group)),
        Some(details(name, resource, group)),
    )
}

/// The 404 of a path no handler serves.
fn no_route() -> Resp {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn forbidden(user: &str, verb: &str, resource: &str, group: &str, ns: &str, name: &str) -> Resp {
    let what = if name.is_empty() {
        qualified(resource, group)
    } else {
        format!("{} {name:?}", qualified(resource, group))
    };
    let scope = if ns.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {ns:?}")
    };
    status(
        403,
        "Forbidden",
        &format!(
            "{what} is forbidden: User {user:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}"
        ),
        Some(details(name, resource, group)),
    )
}

fn conflict(name: &str) -> Resp {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {GR} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(details(name, "virtualservices", GROUP)),
    )
}

/// The canned answer for [`FakeKube::fail_next`].
fn canned(code: u16, user: &str, verb: &str, ns: &str, name: &str) -> Resp {
    match code {
        403 => forbidden(user, verb, "virtualservices", GROUP, ns, name),
        404 => not_found("virtualservices", GROUP, name),
        409 => conflict(name),
        422 => status(
            422,
            "Invalid",
            &format!(
                "VirtualService.{GROUP} {name:?} is invalid: spec.http[0].fault.abort.percentage.value: Invalid value: 200: must be in [0, 100]"
            ),
            Some(
                json!({"name": name, "group": GROUP, "kind": "VirtualService", "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 200: must be in [0, 100]", "field": "spec.http[0].fault.abort.percentage.value"}]}),
            ),
        ),
        429 => status(
            429,
            "TooManyRequests",
            "Too many requests: please try again later",
            Some(json!({"retryAfterSeconds": 1})),
        ),
        503 => status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            Some(json!({})),
        ),
        504 => status(
            504,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
            Some(json!({})),
        ),
        c => status(
            c,
            "InternalError",
            "Internal error occurred: injected by the test",
            Some(json!({"causes": [{"message": "injected by the test"}]})),
        ),
    }
}

// === Discovery ===

fn api_versions(host: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
}

fn core_resources() -> Value {
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], "shortNames": ["po"]},
        {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ns"]}
    ]})
}

fn istio_group(versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v}))
        .collect();
    let mut g = json!({"name": GROUP, "versions": vs});
    if let Some(first) = vs.first() {
        g["preferredVersion"] = first.clone();
    }
    g
}

fn group_list(versions: &[String]) -> Value {
    let mut groups = vec![
        apps_group(),
        jobs::batch_group_entry(),
        json!({"name": "authorization.k8s.io", "versions": [{"groupVersion": "authorization.k8s.io/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "authorization.k8s.io/v1", "version": "v1"}}),
    ];
    if !versions.is_empty() {
        groups.push(istio_group(versions));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn apps_group() -> Value {
    json!({"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}})
}

fn apps_resources() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         "shortNames": ["deploy"], "categories": ["all"]}
    ]})
}

/// The 400 kube-apiserver answers for a `labelSelector` it cannot parse.
fn bad_selector(message: &str) -> Resp {
    status(400, "BadRequest", message, None)
}

/// Items of `objects` in `ns` matching `selector`, in key (name) order as etcd lists.
fn select(
    objects: &BTreeMap<(String, String), Value>,
    ns: &str,
    selector: Option<&str>,
) -> Result<Vec<Value>, Box<Resp>> {
    let sel = match selector.map(Selector::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Err(Box::new(bad_selector(&e))),
    };
    Ok(objects
        .iter()
        .filter(|((n, _), o)| n == ns && sel.as_ref().is_none_or(|s| s.matches_object(o)))
        .map(|(_, o)| o.clone())
        .collect())
}

/// The grace period of a DELETE: a DeleteOptions body when there is one (as the
/// apiserver reads it), else `?gracePeriodSeconds=`.
fn grace_period(body: &[u8], query: Option<&str>) -> Result<Option<i64>, Box<Resp>> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        let Ok(opts) = serde_json::from_slice::<Value>(body) else {
            return Err(Box::new(status(
                400,
                "BadRequest",
                "the body of the request was not a valid DeleteOptions",
                None,
            )));
        };
        return match opts.get("gracePeriodSeconds") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                Box::new(status(
                    400,
                    "BadRequest",
                    &format!("json: cannot unmarshal {v} into Go struct field DeleteOptions.gracePeriodSeconds of type int64"),
                    None,
                ))
            }),
        };
    }
    match query {
        None => Ok(None),
        Some(q) => q.parse::<i64>().map(Some).map_err(|_| {
            Box::new(status(
                400,
                "BadRequest",
                &format!("strconv.ParseInt: parsing {q:?}: invalid syntax"),
                None,
            ))
        }),
    }
}

fn istio_resources(v: &str) -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{v}"), "resources": [
        {"name": "virtualservices", "singularName": "virtualservice", "namespaced": true, "kind": "VirtualService",
         "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
         "shortNames": ["vs"], "categories": ["istio-io", "networking-istio-io"]},
        {"name": "destinationrules", "singularName": "destinationrule", "namespaced": true, "kind": "DestinationRule",
         "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"], "shortNames": ["dr"]}
    ]})
}

// === Request handling ===

/// Who is asking: the client certificate's user, the token's, `system:anonymous` when
/// no credentials came (kube-apiserver's default `--anonymous-auth=true`), or `None`
/// for credentials it does not accept (401).
fn user_of(has_cert: bool, req: &Request<hyper::body::Incoming>) -> Option<String> {
    if has_cert {
        return Some(FakeKube::CERT_USER.into());
    }
    let Some(h) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return Some(ANONYMOUS.into());
    };
    let h = h.to_str().ok()?;
    (h == format!("Bearer {}", FakeKube::TOKEN)).then(|| FakeKube::TOKEN_USER.into())
}

/// The user of a request without credentials.
const ANONYMOUS: &str = "system:anonymous";

fn query(req: &Request<hyper::body::Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn with_version(mut obj: Value, v: &str) -> Value {
    obj["apiVersion"] = json!(format!("{GROUP}/{v}"));
    obj["kind"] = json!("VirtualService");
    obj
}

async fn handle(
    state: Arc<Mutex<State>>,
    has_cert: bool,
    req: Request<hyper::body::Incoming>,
) -> Resp {
    let user = user_of(has_cert, &req);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let label_selector = query(&req, "labelSelector");
    let all_query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let q = |k: &str| {
        all_query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let grace_query = query(&req, "gracePeriodSeconds");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400, "BadRequest", "cannot read the request body", None),
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: all_query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
        content_type: content_type.clone(),
        user: user.clone().unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let Some(user) = user else {
        return status(401, "Unauthorized", "Unauthorized", None);
    };
    // RBAC grants system:anonymous nothing by default (discovery is bound to
    // system:authenticated since Kubernetes 1.14): 403, not 401.
    if user == ANONYMOUS {
        let what = if path.starts_with("/api") && path.matches('/').count() <= 3 {
            format!("forbidden: User {ANONYMOUS:?} cannot get path {path:?}")
        } else {
            format!("{path} is forbidden: User {ANONYMOUS:?} cannot access it")
        };
        return status(403, "Forbidden", &what, None);
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let verb = match (method.as_str(), seg.len()) {
        ("GET", _) if q("watch").as_deref() == Some("true") => "watch",
        ("GET", 5) if seg[0] == "api" => "list",
        ("GET", 4) if seg[0] == "apis" && seg[3] == "virtualservices" => "list",
        ("GET", 6) if seg[0] == "apis" => "list",
        ("GET", _) => "get",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        _ => "get",
    };
    let (ns, name) = match seg.as_slice() {
        ["apis", _, _, "namespaces", ns, _, name] | ["api", _, "namespaces", ns, _, name] => {
            (ns.to_string(), name.to_string())
        }
        ["apis", _, _, "namespaces", ns, _] | ["api", _, "namespaces", ns, _] => {
            (ns.to_string(), String::new())
        }
        _ => (String::new(), String::new()),
    };
    if let Some(i) = st.edit_before.iter().position(|e| e.0 == method) {
        let (_, ens, ename, f) = st.edit_before.remove(i);
        let rv = st.next_rv();
        if let Some(obj) = st.vs.get_mut(&(ens, ename)) {
            f(obj);
            obj["metadata"]["resourceVersion"] = json!(rv);
        }
    }
    let on_object =
        |ns: &str, n: &str| path.ends_with(&format!("/namespaces/{ns}/virtualservices/{n}"));
    land_due(&mut st);
    if let Some(i) = st
        .delete_before
        .iter()
        .position(|(m, dns, n)| *m == method && on_object(dns, n))
    {
        let (_, dns, dname) = st.delete_before.remove(i);
        st.vs.remove(&(dns, dname));
    }
    let fails = st.fail_next.iter().position(|f| {
        f.method == method && f.path.as_ref().is_none_or(|p| path.contains(p.as_str()))
    });
    let fails = match fails {
        Some(i) if st.fail_next[i].skip > 0 => {
            st.fail_next[i].skip -= 1;
            None
        }
        other => other,
    };
    if let Some(i) = fails {
        let f = st.fail_next.remove(i);
        if let (Some(after), [_, _, v, "namespaces", _, "virtualservices", _]) =
            (f.late, seg.as_slice())
        {
            let key = (ns.clone(), name.clone());
            if let Some(before) = st.vs.get(&key).cloned() {
                let v = v.to_string();
                let _ = one_vs(&mut st, &method, &v, &ns, &name, &content_type, &body);
                if let Some(done) = st.vs.insert(key.clone(), before) {
                    st.late.push((std::time::Instant::now() + after, key, done));
                }
            }
        }
        return canned(f.status, &user, verb, &ns, &name);
    }
    let is_resource = seg.len() >= 5 || (seg.len() == 4 && seg[3] == "virtualservices");
    // The resource (with its subresource) a namespaced request is about.
    let (resource_of, group_of) = match seg.as_slice() {
        ["api", _, "namespaces", _, r, _, sub, ..] => (format!("{r}/{sub}"), ""),
        ["api", _, "namespaces", _, r, ..] => (r.to_string(), ""),
        ["apis", g, _, "namespaces", _, r, _, sub, ..] => (format!("{r}/{sub}"), *g),
        ["apis", g, _, "namespaces", _, r, ..] => (r.to_string(), *g),
        _ => (String::new(), ""),
    };
    if is_resource && st.forbidden.contains(&format!("{verb} {resource_of}")) {
        return forbidden(&user, verb, &resource_of, group_of, &ns, &name);
    }
    if is_resource && (st.forbidden.contains(verb) || !granted_in(&st, &ns)) {
        let (resource, group) = if seg[0] == "api" {
            ("pods", "")
        } else if seg[1] == "batch" {
            ("jobs", "batch")
        } else if seg[1] == "apps" {
            ("deployments", "apps")
        } else {
            ("virtualservices", GROUP)
        };
        return forbidden(&user, verb, resource, group, &ns, &name);
    }
    if let Some(resp) = jobs::route(&state, &mut st, &method, &seg, &q, &body) {
        return resp;
    }
    let versions = st.versions.clone();
    let served = |v: &str| versions.iter().any(|s| s == v);
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["api"]) => reply(200, &api_versions(&host)),
        ("GET", ["api", "v1"]) => reply(200, &core_resources()),
        ("GET", ["apis"]) => reply(200, &group_list(&versions)),
        ("GET", ["apis", GROUP]) if !versions.is_empty() => {
            let mut g = istio_group(&versions);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            reply(200, &g)
        }
        ("GET", ["apis", GROUP, v]) if served(v) => reply(200, &istio_resources(v)),
        ("GET", ["apis", GROUP, v, "virtualservices"]) if served(v) => list_vs(&mut st, v, None),
        ("GET", ["apis", GROUP, v, "namespaces", ns, "virtualservices"]) if served(v) => {
            list_vs(&mut st, v, Some(ns))
        }
        (_, ["apis", GROUP, v, "namespaces", ns, "virtualservices"]) if served(v) => {
            create_vs(&mut st, v, ns, &body)
        }
        (m, ["apis", GROUP, v, "namespaces", ns, "virtualservices", name]) if served(v) => {
            one_vs(&mut st, m, v, ns, name, &content_type, &body)
        }
        (
            "POST",
            [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
            ],
        ) => access_review(&st, &user, &body),
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let items = match select(&st.pods, ns, label_selector.as_deref()) {
                Ok(items) => items,
                Err(resp) => return *resp,
            };
            let rv = st.rv.to_string();
            reply(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => reply(200, p),
                None => not_found("pods", "", name),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let grace = match grace_period(&body, grace_query.as_deref()) {
                Ok(g) => g,
                Err(resp) => return *resp,
            };
            match st.pods.remove(&(ns.to_string(), name.to_string())) {
                Some(mut p) => {
                    st.pod_deletions.push(PodDeletion {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                        grace_period_seconds: grace,
                    });
                    p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    p["metadata"]["deletionGracePeriodSeconds"] = json!(grace.unwrap_or(30));
                    reply(200, &p)
                }
                None => not_found("pods", "", name),
            }
        }
        ("GET", ["apis", "apps"]) => {
            let mut g = apps_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            reply(200, &g)
        }
        ("GET", ["apis", "apps", "v1"]) => reply(200, &apps_resources()),
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments"]) => {
            let items = match select(&st.deployments, ns, label_selector.as_deref()) {
                Ok(items) => items,
                Err(resp) => return *resp,
            };
            let rv = st.rv.to_string();
            reply(
                200,
                &json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name]) => {
            match st.deployments.get(&(ns.to_string(), name.to_string())) {
                Some(d) => reply(200, d),
                None => not_found("deployments", "apps", name),
            }
        }
        _ => no_route(),
    }
}

/// Stores the late changes ([`FakeKube::fail_next_then_apply`]) that are due.
fn land_due(st: &mut State) {
    let now = std::time::Instant::now();
    while let Some(i) = st.late.iter().position(|(due, _, _)| *due <= now) {
        let (_, key, obj) = st.late.remove(i);
        st.vs.insert(key, obj);
    }
}

fn list_vs(st: &mut State, v: &str, ns: Option<&str>) -> Resp {
    let items: Vec<Value> = st
        .vs
        .iter()
        .filter(|((n, _), _)| ns.is_none_or(|want| n == want))
        .map(|(_, o)| with_version(o.clone(), v))
        .collect();
    reply(
        200,
        &json!({"apiVersion": format!("{GROUP}/{v}"), "kind": "VirtualServiceList", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    )
}

fn create_vs(st: &mut State, v: &str, ns: &str, body: &[u8]) -> Resp {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not a JSON object", None);
    };
    let Some(name) = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return status(
            422,
            "Invalid",
            &format!(
                "VirtualService.{GROUP} \"\" is invalid: metadata.name: Required value: name or generateName is required"
            ),
            Some(
                json!({"group": GROUP, "kind": "VirtualService", "causes": [{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}]}),
            ),
        );
    };
    let key = (ns.to_string(), name.clone());
    if st.vs.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("{GR} {name:?} already exists"),
            Some(details(&name, "virtualservices", GROUP)),
        );
    }
    let rv = st.next_rv();
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
    obj["metadata"]["generation"] = json!(1);
    let obj = with_version(obj, v);
    if let Some(refused) = admission::admit(st, &name, &obj) {
        return refused;
    }
    st.vs.insert(key, obj.clone());
    reply(201, &obj)
}

fn store(st: &mut State, key: (String, String), before: &Value, mut after: Value) -> Value {
    // A write that changes nothing is a no-op: the resourceVersion stays (etcd is not
    // written), as kube-apiserver does.
    let mut same = after.clone();
    if let (Some(m), Some(rv)) = (
        same.get_mut("metadata").and_then(Value::as_object_mut),
        before.pointer("/metadata/resourceVersion"),
    ) {
        m.insert("resourceVersion".into(), rv.clone());
    }
    if same == *before {
        return same;
    }
    let rv = st.next_rv();
    after["metadata"]["resourceVersion"] = json!(rv);
    let generation = before
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let bumped = if before.get("spec") != after.get("spec") {
        generation + 1
    } else {
        generation
    };
    after["metadata"]["generation"] = json!(bumped);
    st.vs.insert(key, after.clone());
    after
}

fn one_vs(
    st: &mut State,
    method: &str,
    v: &str,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Resp {
    let key = (ns.to_string(), name.to_string());
    let Some(current) = st.vs.get(&key).cloned() else {
        return not_found("virtualservices", GROUP, name);
    };
    match method {
        "GET" => reply(200, &with_version(current, v)),
        "DELETE" => {
            st.vs.remove(&key);
            reply(200, &with_version(current, v))
        }
        "PUT" => {
            let Ok(obj) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "the body is not a JSON object", None);
            };
            let sent_rv = obj.pointer("/metadata/resourceVersion");
            // Custom resources refuse an update without a resourceVersion (422), unlike
            // some built-in kinds.
            if sent_rv.is_none_or(|r| r.as_str().is_none_or(str::is_empty)) {
                return status(
                    422,
                    "Invalid",
                    &format!(
                        "VirtualService.{GROUP} {name:?} is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                    ),
                    Some(details(name, "virtualservices", GROUP)),
                );
            }
            if sent_rv != current.pointer("/metadata/resourceVersion") {
                return conflict(name);
            }
            let obj = with_version(obj, v);
            if let Some(refused) = admission::admit(st, name, &obj) {
                return refused;
            }
            let stored = store(st, key, &current, obj);
            reply(200, &stored)
        }
        "PATCH" => {
            let mime = content_type.split(';').next().unwrap_or("").trim();
            if mime != "application/json-patch+json" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (this fake serves only application/json-patch+json, got {mime:?})"
                    ),
                    None,
                );
            }
            let patch: json_patch::Patch = match serde_json::from_slice(body) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", &e.to_string(), None),
            };
            let mut patched = with_version(current.clone(), v);
            let has_test = patch
                .0
                .iter()
                .any(|op| matches!(op, json_patch::PatchOperation::Test(_)));
            let forced = has_test && st.failing_tests > 0;
            if forced {
                st.failing_tests -= 1;
            }
            if forced || apply_like_apiserver(&mut patched, &patch, body).is_err() {
                // apiserver handlers/patch.go: NewGenericServerResponse(422, "", GroupResource{}, "", err, 0, false)
                return status(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    Some(json!({})),
                );
            }
            if patched.pointer("/metadata/resourceVersion")
                != current.pointer("/metadata/resourceVersion")
            {
                return conflict(name);
            }
            if patched.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
                return status(
                    422,
                    "Invalid",
                    &format!(
                        "VirtualService.{GROUP} {name:?} is invalid: metadata.name: Invalid value: the name of the object does not match the name on the URL"
                    ),
                    Some(details(name, "VirtualService", GROUP)),
                );
            }
            if let Some(refused) = admission::admit(st, name, &patched) {
                return refused;
            }
            let stored = store(st, key, &current, patched);
            reply(200, &stored)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    }
}

// === JSON Patch as the API server applies it (evanphx/json-patch v4) ===

/// JSON kept as its raw text: scalars as their bytes (strings with their escapes).
#[derive(Debug)]
enum Raw<'a> {
    Obj(Vec<(String, Raw<'a>)>),
    Arr(Vec<Raw<'a>>),
    Leaf(&'a str),
}

struct RawParser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> RawParser<'a> {
    fn parse(s: &'a str) -> Option<Raw<'a>> {
        let mut p = Self { s, i: 0 };
        let v = p.value()?;
        p.ws();
        (p.i == s.len()).then_some(v)
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return self.s.get(start..self.i);
                }
                _ => self.i += 1,
            }
        }
    }
    fn value(&mut self) -> Option<Raw<'a>> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(Raw::Obj(members));
                }
                loop {
                    self.ws();
                    let key: String = serde_json::from_str(self.string()?).ok()?;
                    self.ws();
                    (self.peek()? == b':').then_some(())?;
                    self.i += 1;
                    members.push((key, self.value()?));
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Raw::Obj(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(Raw::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Raw::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Raw::Leaf),
            _ => {
                let start = self.i;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
                self.s.get(start..self.i).map(Raw::Leaf)
            }
        }
    }
}

/// `lazyNode.equal(stored, sent)`: the keys of `stored` must be in `sent` with equal
/// values; arrays item by item; scalars by their (compacted) raw bytes.
fn evanphx_equal(stored: &Raw, sent: &Raw) -> bool {
    match (stored, sent) {
        (Raw::Leaf(a), Raw::Leaf(b)) => a == b,
        // Exactly the same keys (evanphx json-patch >= 4.6 compares key counts; a
        // repeated key in the sent JSON counts once, its last value wins, as Go reads it).
        (Raw::Obj(a), Raw::Obj(b)) => {
            let unique: std::collections::BTreeSet<&String> = b.iter().map(|(k, _)| k).collect();
            unique.len() == a.len()
                && a.iter().all(|(k, v)| {
                    b.iter()
                        .rev()
                        .find(|(bk, _)| bk == k)
                        .is_some_and(|(_, bv)| evanphx_equal(v, bv))
                })
        }
        (Raw::Arr(a), Raw::Arr(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| evanphx_equal(x, y))
        }
        _ => false,
    }
}

/// Applies `patch` op by op; a `test` compares the document as Go stores it with the
/// raw bytes of the op's `value` in `body`.
fn apply_like_apiserver(
    doc: &mut Value,
    patch: &json_patch::Patch,
    body: &[u8],
) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let Some(Raw::Arr(ops)) = RawParser::parse(text) else {
        return Err("the patch is not a JSON array".into());
    };
    for (op, raw) in patch.0.iter().zip(&ops) {
        if let json_patch::PatchOperation::Test(t) = op {
            let sent = match raw {
                Raw::Obj(m) => m.iter().rev().find(|(k, _)| k == "value").map(|(_, v)| v),
                _ => None,
            };
            let stored_text = doc.pointer(t.path.as_str()).map(go_json);
            let ok = match (&stored_text, sent) {
                (Some(st), Some(sent)) => {
                    RawParser::parse(st).is_some_and(|stored| evanphx_equal(&stored, sent))
                }
                _ => false,
            };
            if !ok {
                return Err(format!("testing value {} failed", t.path));
            }
        } else {
            json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Whether the user's Role covers namespace `ns` (`""`: the cluster scope).
fn granted_in(st: &State, ns: &str) -> bool {
    st.role_namespaces
        .as_ref()
        .is_none_or(|set| !ns.is_empty() && set.contains(ns))
}

fn access_review(st: &State, user: &str, body: &[u8]) -> Resp {
    let Ok(mut review) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not a JSON object", None);
    };
    let verb = review
        .pointer("/spec/resourceAttributes/verb")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = review
        .pointer("/spec/resourceAttributes/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let allowed = !st.forbidden.contains(&verb) && granted_in(st, ns);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": format!("RBAC: allowed for {user}")})
    } else {
        json!({"allowed": false})
    };
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    reply(201, &review)
}

/// A small reviews VirtualService with two routes (the second one named `v2`).
pub fn reviews(ns: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": ns, "labels": {"app": "reviews"}},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"name": "default", "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                 "timeout": "3s"}
            ]
        }
    })
}
