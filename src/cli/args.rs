//! Flags shared by several commands: where a change goes (`-f`, `--mesh`, the
//! cluster), how to reach the cluster, route selection, output formats — and how they
//! become a [`Target`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::{CliResult, Failure};
use crate::cancel::Cancel;
use crate::cluster::ConnectOptions;
use crate::istio::RouteSelector;
use crate::target::{self, ClusterTarget, FileTarget, MeshTarget, Target};

/// Output formats of commands that change a VirtualService.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The changed object as YAML.
    Yaml,
    /// The changed object as JSON.
    Json,
    /// The RFC 6902 JSON Patch (with its `test` guards).
    Patch,
    /// `virtualservice.networking.istio.io/NAME`, as kubectl's `-o name`.
    Name,
}

/// How to reach the cluster (kubectl's flags; `KUBERNETES_HOST` and friends win when set).
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config); refused when KUBERNETES_HOST is set, since the KUBERNETES_* variables win.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Do not verify the API server's certificate (insecure; prints a warning).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// How long to wait for each API server answer (Go duration; 0 = no limit; default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub request_timeout: Option<Duration>,
}

impl ConnArgs {
    pub fn options(&self, namespace: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: namespace.map(str::to_string),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            request_timeout: Some(self.request_timeout.unwrap_or(Duration::from_secs(30))),
        }
    }

    /// Refuses flags that the environment overrides (exit 2, before connecting):
    /// with `KUBERNETES_HOST` set the `KUBERNETES_*` variables win, so a
    /// `--kubeconfig` or `--context` would silently be ignored.
    pub fn check(&self) -> CliResult<()> {
        let host_set = std::env::var_os("KUBERNETES_HOST")
            .is_some_and(|v| !v.to_string_lossy().trim().is_empty());
        if host_set && (self.kubeconfig.is_some() || self.context.is_some()) {
            return Err(Failure::input(anyhow!(
                "KUBERNETES_HOST is set, so the KUBERNETES_* variables are used and --kubeconfig/--context would be ignored; unset KUBERNETES_HOST to use a kubeconfig, or drop the flag"
            )));
        }
        Ok(())
    }

    /// Whether any cluster flag was given (refused on a mesh or a file).
    pub fn any(&self) -> bool {
        self.kubeconfig.is_some()
            || self.context.is_some()
            || self.insecure_skip_tls_verify
            || self.request_timeout.is_some()
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    crate::istio::types::parse_go_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?}: use Go syntax such as 5s or 1m"))
}

/// `--dry-run[=client]` as kubectl spells it: `client` (the default when the flag has no
/// value) is meshdrill's dry run, `none` is none; `server` (the API server's own dry
/// run) is refused rather than taken for a client-side one.
pub fn dry_run_mode(s: &str) -> Result<bool, String> {
    match s {
        "client" | "true" => Ok(true),
        "none" | "false" => Ok(false),
        "server" => Err(
            "server-side dry run is not supported: meshdrill's dry run is client-side and sends nothing; use --dry-run or --dry-run=client"
                .into(),
        ),
        _ => Err(format!("invalid value {s:?}: use client or none")),
    }
}

/// `-n`: a Kubernetes namespace name, an RFC 1123 label (lower-case letters, digits
/// and `-`, starting and ending with a letter or digit, at most 63 characters).
pub fn parse_namespace(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a namespace name: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (RFC 1123)"
        ))
    }
}

/// A positive Go duration (`--for`, `--phase`).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    crate::istio::types::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?}: use Go syntax such as 90s, 10m or 1h"))
}

/// Where a change goes, and which routes it touches (shared by every changing command).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The VirtualService name (optional with -f when the file holds only one).
    #[arg(value_name = "VS")]
    pub name: Option<String>,
    /// Change a manifest file instead of the cluster: print the result, change nothing.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        conflicts_with = "mesh"
    )]
    pub file: Option<PathBuf>,
    /// Change a running local mesh (the --dir of `meshdrill mesh up`).
    #[arg(long, value_name = "DIR")]
    pub mesh: Option<PathBuf>,
    /// Output: yaml|json (the changed object), patch (the RFC 6902 patch) or name (kubectl's -o name). With -f the default is yaml.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
    /// Namespace of the VirtualService (default on a cluster: the kubeconfig context's;
    /// on a mesh: the only VirtualService of that name, in any namespace).
    #[arg(short = 'n', long, value_parser = parse_namespace)]
    pub namespace: Option<String>,
    /// Only the route with this name.
    #[arg(long, value_name = "NAME", group = "routesel")]
    pub route: Option<String>,
    /// Only the route at this 0-based index of spec.http.
    #[arg(
        long,
        value_name = "N",
        group = "routesel",
        allow_negative_numbers = true
    )]
    pub route_index: Option<usize>,
    /// Only routes with a destination to HOST (short name or FQDN), optionally HOST/SUBSET.
    #[arg(long, value_name = "HOST[/SUBSET]", group = "routesel")]
    pub destination: Option<String>,
    /// How long the change may stay (default 10m): after this, `meshdrill recover` (or,
    /// on a mesh, `meshdrill mesh up` itself) rolls it back; with --wait, how long to hold it.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_ttl, allow_hyphen_values = true)]
    pub ttl: Option<Duration>,
    /// Print what would be sent (the patch, or -o yaml|json the object) and change nothing (--dry-run=client too, as kubectl).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", hide_default_value = true, hide_possible_values = true, value_name = "client", value_parser = dry_run_mode, action = clap::ArgAction::Set)]
    pub dry_run: bool,
    /// Hold the change for the --for duration, then roll it back; Ctrl-C/SIGTERM rolls back at once (exit 130).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

impl TargetArgs {
    /// `--for`, or its default: 10 minutes.
    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or(Duration::from_secs(600))
    }

    pub fn selector(&self) -> RouteSelector {
        if let Some(n) = &self.route {
            RouteSelector::Name(n.clone())
        } else if let Some(i) = self.route_index {
            RouteSelector::Index(i)
        } else if let Some(d) = &self.destination {
            let (host, subset) = match d.split_once('/') {
                Some((h, s)) => (h.to_string(), Some(s.to_string())),
                None => (d.clone(), None),
            };
            RouteSelector::Destination { host, subset }
        } else {
            RouteSelector::All
        }
    }

    /// Refuses what the chosen target cannot honour (exit 2), before anything is read.
    pub fn check(&self) -> CliResult<()> {
        self.conn.check()?;
        if self.file.is_some() {
            if self.wait {
                return Err(Failure::input(anyhow!(
                    "--wait holds a change on a live target (a cluster or --mesh DIR); with -f nothing is changed, the result is printed"
                )));
            }
            if self.conn.any() {
                return Err(Failure::input(anyhow!(
                    "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout are for the cluster; with -f nothing is sent anywhere"
                )));
            }
        }
        if self.mesh.is_some() && self.conn.any() {
            return Err(Failure::input(anyhow!(
                "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout are for the cluster, not --mesh"
            )));
        }
        if self.wait && self.dry_run {
            return Err(Failure::input(anyhow!(
                "--dry-run changes nothing, so there is nothing to hold with --wait"
            )));
        }
        Ok(())
    }

    /// Opens the target: the file, the running mesh, or the cluster (connected and
    /// its VirtualService API discovered; `stop` abandons that with nothing sent).
    pub async fn open(&self, stop: Option<&Cancel>) -> CliResult<Target> {
        if let Some(f) = &self.file {
            return FileTarget::open(f).map(Target::File).map_err(fail);
        }
        if let Some(d) = &self.mesh {
            return MeshTarget::open(d).map(Target::Mesh).map_err(fail);
        }
        let what = self.name.clone().unwrap_or_default();
        ClusterTarget::connect(&self.conn.options(self.namespace.as_deref()), stop, &what)
            .await
            .map(Target::Cluster)
            .map_err(fail)
    }
}

/// A mesh error as a CLI failure: input (exit 2) or target (exit 3).
pub fn mesh_fail(e: crate::mesh::MeshError) -> Failure {
    if e.is_input() {
        Failure::input(e)
    } else {
        Failure::target(e)
    }
}

/// A target error as a CLI failure: input (exit 2) or target (exit 3).
pub fn fail(e: target::Error) -> Failure {
    if e.is_input() {
        Failure::input(e)
    } else {
        Failure::target(e)
    }
}

/// Where `status` and `recover` look: the cluster, or a running mesh.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// A running local mesh (the --dir of `meshdrill mesh up`) instead of the cluster.
    #[arg(long, value_name = "DIR")]
    pub mesh: Option<PathBuf>,
    /// Namespace (default: the context's; on a mesh, every namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces", value_parser = parse_namespace)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

impl ScopeArgs {
    pub async fn open(&self) -> CliResult<Target> {
        self.conn.check()?;
        if let Some(d) = &self.mesh {
            if self.conn.any() {
                return Err(Failure::input(anyhow!(
                    "--kubeconfig, --context, --insecure-skip-tls-verify and --request-timeout are for the cluster, not --mesh"
                )));
            }
            return MeshTarget::open(d).map(Target::Mesh).map_err(fail);
        }
        ClusterTarget::connect(&self.conn.options(self.namespace.as_deref()), None, "")
            .await
            .map(Target::Cluster)
            .map_err(fail)
    }

    /// The namespace to list (`None`: all).
    pub fn scope<'a>(&'a self, t: &'a Target) -> Option<&'a str> {
        if self.all_namespaces {
            return None;
        }
        match t {
            Target::Cluster(c) => Some(self.namespace.as_deref().unwrap_or(&c.cluster.namespace)),
            _ => self.namespace.as_deref(),
        }
    }
}

/// A runtime for a command: multi-threaded (mesh operations run on blocking threads,
/// signals on a task while the main flow waits).
pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::target(anyhow!("cannot start the async runtime: {e}")))
}
