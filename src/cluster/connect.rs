//! Connection settings, read as kubectl reads them, plus the `KUBERNETES_*` variables
//! other chaos tools use.
//!
//! Order: when `KUBERNETES_HOST` is set, `KUBERNETES_HOST`, `KUBERNETES_CA_CERT_FILE`,
//! `KUBERNETES_CERT_FILE` + `KUBERNETES_KEY_FILE` and `KUBERNETES_API_KEY` win over any
//! kubeconfig. Otherwise `--kubeconfig`, then `KUBECONFIG` (a `:`-separated list, merged),
//! then `~/.kube/config`, with `--context`; with none of those files, the in-cluster
//! service account. TLS verification stays on unless `--insecure-skip-tls-verify`.
//! Every error names the variable, flag or kubeconfig entry it came from.
//! `KUBERNETES_HOST` without `KUBERNETES_CA_CERT_FILE` carries a [`tls_hint`], shown
//! when the server certificate is not trusted: other chaos tools skip verification.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Error;

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig FILE`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME`.
    pub context: Option<String>,
    /// `-n NS`: overrides the context's namespace.
    pub namespace: Option<String>,
    /// `--insecure-skip-tls-verify`.
    pub insecure_skip_tls_verify: bool,
    /// `--request-timeout`: how long to wait for an answer (zero: no limit; default 30s).
    pub request_timeout: Option<Duration>,
}

/// Resolved settings, ready for `kube::Client::try_from`.
pub struct Settings {
    pub config: kube::Config,
    pub server: String,
    pub origin: String,
    pub user: String,
    pub namespace: String,
    pub warnings: Vec<String>,
    /// What to tell the user when the server certificate turns out not to be trusted
    /// (see [`tls_hint`]).
    pub tls_hint: Option<String>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves the settings; `env` looks variables up (the process environment in use).
pub async fn resolve(
    opts: &ConnectOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Error> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut s = match get("KUBERNETES_HOST") {
        Some(host) => from_env(&host, opts, &get)?,
        None => from_kubeconfig(opts, &get).await?,
    };
    s.config.connect_timeout = Some(CONNECT_TIMEOUT);
    s.config.read_timeout = match opts.request_timeout {
        Some(t) if t.is_zero() => None,
        Some(t) => Some(t),
        None => Some(READ_TIMEOUT),
    };
    s.config.reset_reader_on_write = true;
    // meshdrill retries reads itself and never retries writes.
    s.config.default_retry = false;
    if opts.insecure_skip_tls_verify {
        s.config.accept_invalid_certs = true;
        s.warnings.push(format!(
            "--insecure-skip-tls-verify: the API server certificate of {} is not checked; anyone on the path can read and change what meshdrill sends",
            s.server
        ));
    }
    if let Some(ns) = &opts.namespace {
        s.namespace = ns.clone();
    }
    s.config.default_namespace = s.namespace.clone();
    Ok(s)
}

fn settings_err(origin: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Settings {
        origin: origin.into(),
        reason: reason.into(),
    }
}

fn read_file(var: &str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| settings_err(format!("{var}={path}"), format!("cannot read: {e}")))
}

/// PEM certificates of a CA bundle as DER.
fn pem_certs(origin: &str, pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| settings_err(origin, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(settings_err(origin, "no PEM certificate in this file"));
    }
    Ok(certs)
}

fn from_env(
    host: &str,
    opts: &ConnectOptions,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Error> {
    let host = host.trim();
    let url = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| settings_err(format!("KUBERNETES_HOST={host}"), format!("not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(settings_err(
            format!("KUBERNETES_HOST={host}"),
            "expected https://HOST[:PORT]",
        ));
    }
    if opts.kubeconfig.is_some() || opts.context.is_some() {
        return Err(settings_err(
            "KUBERNETES_HOST",
            "is set, so the KUBERNETES_* variables are used and --kubeconfig/--context would be ignored; unset KUBERNETES_HOST to use a kubeconfig",
        ));
    }
    let mut config = kube::Config::new(uri);
    let mut origin = vec![format!("KUBERNETES_HOST={host}")];
    if let Some(ca) = get("KUBERNETES_CA_CERT_FILE") {
        let pem = read_file("KUBERNETES_CA_CERT_FILE", &ca)?;
        config.root_cert = Some(pem_certs(&format!("KUBERNETES_CA_CERT_FILE={ca}"), &pem)?);
        origin.push(format!("KUBERNETES_CA_CERT_FILE={ca}"));
    }
    let mut auth = serde_json::Map::new();
    let mut user = Vec::new();
    match (get("KUBERNETES_CERT_FILE"), get("KUBERNETES_KEY_FILE")) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_file("KUBERNETES_CERT_FILE", &cert)?;
            pem_certs(&format!("KUBERNETES_CERT_FILE={cert}"), &cert_pem)?;
            let key_pem = read_file("KUBERNETES_KEY_FILE", &key)?;
            if rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                return Err(settings_err(
                    format!("KUBERNETES_KEY_FILE={key}"),
                    "not a PEM private key",
                ));
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            auth.insert(
                "client-certificate-data".into(),
                b64.encode(&cert_pem).into(),
            );
            auth.insert("client-key-data".into(), b64.encode(&key_pem).into());
            origin.push(format!(
                "KUBERNETES_CERT_FILE={cert}, KUBERNETES_KEY_FILE={key}"
            ));
            user.push(format!("client certificate {cert}"));
        }
        (Some(_), None) => {
            return Err(settings_err(
                "KUBERNETES_CERT_FILE",
                "is set but KUBERNETES_KEY_FILE is not: a client certificate needs its key",
            ));
        }
        (None, Some(_)) => {
            return Err(settings_err(
                "KUBERNETES_KEY_FILE",
                "is set but KUBERNETES_CERT_FILE is not: a client key needs its certificate",
            ));
        }
        (None, None) => {}
    }
    if let Some(token) = get("KUBERNETES_API_KEY") {
        auth.insert("token".into(), token.trim().into());
        origin.push("KUBERNETES_API_KEY".into());
        user.push("bearer token from KUBERNETES_API_KEY".into());
    }
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::Value::Object(auth))
        .map_err(|e| settings_err("KUBERNETES_* credentials", e.to_string()))?;
    if user.is_empty() {
        user.push("anonymous (no KUBERNETES_CERT_FILE/KEY_FILE or KUBERNETES_API_KEY)".into());
    }
    let hint = config
        .root_cert
        .is_none()
        .then(|| tls_hint(get("KUBERNETES_CERT_FILE").as_deref()));
    Ok(Settings {
        server: url,
        config,
        origin: origin.join(", "),
        user: user.join(" + "),
        namespace: "default".into(),
        warnings: Vec::new(),
        tls_hint: hint,
    })
}

/// The hint for `KUBERNETES_HOST` without `KUBERNETES_CA_CERT_FILE` when the server
/// certificate is not trusted: other chaos tools skip verification unless told, so
/// their settings often lack the CA. With a minikube client certificate
/// (`<X>/.minikube/profiles/<profile>/client.crt`) it names minikube's CA,
/// `<X>/.minikube/ca.crt`, as a line to copy.
pub fn tls_hint(cert_file: Option<&str>) -> String {
    let mut hint = String::from(
        "hint: KUBERNETES_HOST is set without KUBERNETES_CA_CERT_FILE, and no CA meshdrill trusts signed the API server certificate. meshdrill verifies TLS (chaostoolkit turns verification off unless KUBERNETES_VERIFY_SSL is set): set KUBERNETES_CA_CERT_FILE to the cluster's CA certificate",
    );
    match cert_file.and_then(minikube_ca) {
        Some(ca) => hint.push_str(&format!(
            ". The client certificate is minikube's; its CA is:\n  KUBERNETES_CA_CERT_FILE={}",
            ca.display()
        )),
        None => hint.push_str(" (the certificate-authority of its kubeconfig entry)"),
    }
    hint
}

/// `<X>/.minikube/ca.crt` for a certificate at `<X>/.minikube/profiles/<profile>/…`.
fn minikube_ca(cert_file: &str) -> Option<PathBuf> {
    let profile_dir = Path::new(cert_file).parent()?;
    let profiles = profile_dir.parent()?;
    let minikube = profiles.parent()?;
    (profiles.file_name()? == "profiles" && minikube.file_name()? == ".minikube")
        .then(|| minikube.join("ca.crt"))
}

/// The kubeconfig files to read and the name of the setting that chose them.
fn kubeconfig_paths(
    opts: &ConnectOptions,
    get: &dyn Fn(&str) -> Option<String>,
) -> (Vec<PathBuf>, &'static str) {
    if let Some(p) = &opts.kubeconfig {
        return (vec![p.clone()], "--kubeconfig");
    }
    if let Some(v) = get("KUBECONFIG") {
        let paths = std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        return (paths, "KUBECONFIG");
    }
    let home = get("HOME").map(PathBuf::from).or_else(std::env::home_dir);
    (
        home.map(|h| h.join(".kube").join("config"))
            .into_iter()
            .collect(),
        "~/.kube/config",
    )
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

async fn from_kubeconfig(
    opts: &ConnectOptions,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Error> {
    let (paths, chosen_by) = kubeconfig_paths(opts, get);
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        if chosen_by == "~/.kube/config" && get("KUBERNETES_SERVICE_HOST").is_some() {
            return in_cluster();
        }
        return Err(settings_err(
            format!("{chosen_by} ({})", show(&paths)),
            "no such file; set KUBECONFIG, pass --kubeconfig, or set KUBERNETES_HOST (with KUBERNETES_CA_CERT_FILE and KUBERNETES_CERT_FILE/KEY_FILE or KUBERNETES_API_KEY)",
        ));
    }
    if chosen_by == "--kubeconfig" && existing.len() != paths.len() {
        return Err(settings_err(
            format!("--kubeconfig {}", show(&paths)),
            "no such file",
        ));
    }
    let mut merged: Option<Kubeconfig> = None;
    for p in &existing {
        let kc = Kubeconfig::read_from(p).map_err(|e| {
            settings_err(
                format!("kubeconfig {} ({chosen_by})", p.display()),
                e.to_string(),
            )
        })?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| {
                settings_err(
                    format!("kubeconfig {} ({chosen_by})", p.display()),
                    e.to_string(),
                )
            })?,
        });
    }
    let kc = merged.unwrap_or_default();
    let files = show(&existing.iter().map(|p| (*p).clone()).collect::<Vec<_>>());
    let context = opts.context.clone().or_else(|| kc.current_context.clone());
    let Some(context) = context else {
        return Err(settings_err(
            format!("kubeconfig {files}"),
            "no current-context; pass --context NAME",
        ));
    };
    let named = kc.contexts.iter().find(|c| c.name == context);
    let Some(ctx) = named.and_then(|c| c.context.clone()) else {
        let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(settings_err(
            format!("kubeconfig {files}"),
            format!(
                "no context named {context:?} (contexts: {})",
                known.join(", ")
            ),
        ));
    };
    let origin = format!(
        "kubeconfig {files}, context {context} (cluster {}, user {})",
        ctx.cluster,
        ctx.user.as_deref().unwrap_or("-")
    );
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| settings_err(origin.clone(), e.to_string()))?;
    Ok(Settings {
        server: server_of(&config),
        namespace: config.default_namespace.clone(),
        user: ctx.user.clone().unwrap_or_else(|| "anonymous".into()),
        config,
        origin,
        warnings: Vec::new(),
        tls_hint: None,
    })
}

/// The API server URL as users write it (no trailing slash).
fn server_of(config: &kube::Config) -> String {
    config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string()
}

fn in_cluster() -> Result<Settings, Error> {
    let config = kube::Config::incluster()
        .map_err(|e| settings_err("in-cluster service account", e.to_string()))?;
    let sa = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    Ok(Settings {
        server: server_of(&config),
        namespace: config.default_namespace.clone(),
        user: format!("service account (token {})", sa.join("token").display()),
        config,
        origin: "in-cluster service account (KUBERNETES_SERVICE_HOST)".into(),
        warnings: Vec::new(),
        tls_hint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn settings_error(r: Result<Settings, Error>) -> String {
        match r {
            Ok(_) => String::from("ok"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn missing_ca_file_names_the_variable() {
        let env = env_of(&[
            ("KUBERNETES_HOST", "https://127.0.0.1:6443"),
            ("KUBERNETES_CA_CERT_FILE", "/nonexistent/ca.crt"),
        ]);
        let e = settings_error(resolve(&ConnectOptions::default(), &env).await);
        assert!(
            e.contains("KUBERNETES_CA_CERT_FILE=/nonexistent/ca.crt"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn cert_without_key_is_refused() {
        let env = env_of(&[
            ("KUBERNETES_HOST", "127.0.0.1:6443"),
            ("KUBERNETES_CERT_FILE", "/x.crt"),
        ]);
        let e = settings_error(resolve(&ConnectOptions::default(), &env).await);
        assert!(e.contains("KUBERNETES_KEY_FILE is not"), "{e}");
    }

    #[tokio::test]
    async fn bad_host_names_the_variable() {
        let env = env_of(&[("KUBERNETES_HOST", "ht tp://x")]);
        let e = settings_error(resolve(&ConnectOptions::default(), &env).await);
        assert!(e.contains("KUBERNETES_HOST"), "{e}");
    }

    #[tokio::test]
    async fn token_env_wins_and_namespace_flag_applies() {
        let env = env_of(&[
            ("KUBERNETES_HOST", "127.0.0.1:6443"),
            ("KUBERNETES_API_KEY", "abc"),
            ("KUBECONFIG", "/nonexistent"),
        ]);
        let opts = ConnectOptions {
            namespace: Some("shop".into()),
            ..Default::default()
        };
        let s = resolve(&opts, &env).await.expect("settings");
        assert_eq!(s.server, "https://127.0.0.1:6443");
        assert_eq!(s.namespace, "shop");
        assert!(s.user.contains("KUBERNETES_API_KEY"));
        assert!(!s.config.default_retry);
    }

    #[test]
    fn tls_hint_names_the_variable_and_minikube_ca() {
        let h = tls_hint(Some("/home/u/.minikube/profiles/minikube/client.crt"));
        assert!(h.contains("meshdrill verifies TLS"), "{h}");
        assert!(
            h.contains("\n  KUBERNETES_CA_CERT_FILE=/home/u/.minikube/ca.crt"),
            "{h}"
        );
        let other = tls_hint(Some("/home/u/.minikube/client.crt"));
        assert!(other.contains("set KUBERNETES_CA_CERT_FILE"), "{other}");
        assert!(!other.contains(".minikube/ca.crt"), "{other}");
        assert_eq!(tls_hint(None), other);
        assert_eq!(
            minikube_ca("/x/.minikube/profiles/p2/client.crt"),
            Some(PathBuf::from("/x/.minikube/ca.crt"))
        );
        assert_eq!(minikube_ca("/x/minikube/profiles/p2/client.crt"), None);
    }

    #[tokio::test]
    async fn only_host_without_ca_gets_a_tls_hint() {
        let env = env_of(&[("KUBERNETES_HOST", "127.0.0.1:6443")]);
        let s = resolve(&ConnectOptions::default(), &env).await.expect("s");
        assert!(s.tls_hint.is_some());
    }

    #[tokio::test]
    async fn missing_kubeconfig_names_the_path() {
        let env = env_of(&[("KUBECONFIG", "/nonexistent/kc")]);
        let e = settings_error(resolve(&ConnectOptions::default(), &env).await);
        assert!(e.contains("KUBECONFIG (/nonexistent/kc)"), "{e}");
    }
}
