//! The Envoy process: finding the binary, its bootstrap (file-based LDS/CDS, RDS in a
//! watched directory), readiness, the admin interface, and live route updates by
//! write + rename (FACTS.md: an in-place edit is ignored).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::MeshError;

/// `versions.env`: the Envoy release the suite is proven on and the Istio release whose
/// translation the local mesh follows.
const VERSIONS: &str = include_str!("../../versions.env");

/// `(envoy, istio)` versions from `versions.env` (`"?"` if a line is missing).
pub fn pinned_versions() -> (&'static str, &'static str) {
    let get = |key: &str| {
        VERSIONS
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .next()
            .unwrap_or("?")
    };
    (get("ENVOY_VERSION"), get("ISTIO_VERSION"))
}

/// The environment variable naming the Envoy binary.
pub const ENV_VAR: &str = "MESHDRILL_ENVOY";

/// Finds Envoy: `explicit` (--envoy), `$MESHDRILL_ENVOY`, the project virtualenv
/// (`.venv/bin/envoy` in the current directory, then relative to the executable's
/// repository, e.g. `target/debug/meshdrill` → `../../.venv/bin/envoy`), then `envoy`
/// on PATH.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, MeshError> {
    find_envoy_in(&Lookup {
        explicit: explicit.map(Path::to_path_buf),
        env: std::env::var_os(ENV_VAR),
        cwd: std::env::current_dir().ok(),
        exe: std::env::current_exe().ok(),
        path: std::env::var_os("PATH"),
    })
}

/// The inputs of the Envoy lookup (the process environment, or a test's).
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub explicit: Option<PathBuf>,
    pub env: Option<std::ffi::OsString>,
    pub cwd: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    pub path: Option<std::ffi::OsString>,
}

/// [`find_envoy`] over explicit inputs.
pub fn find_envoy_in(l: &Lookup) -> Result<PathBuf, MeshError> {
    let mut tried = Vec::new();
    if let Some(p) = &l.explicit {
        if is_executable(p) {
            return Ok(p.clone());
        }
        tried.push(format!("--envoy {} (not an executable file)", p.display()));
        return Err(MeshError::EnvoyNotFound { tried });
    }
    match &l.env {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(v);
            if is_executable(&p) {
                return Ok(p);
            }
            tried.push(format!(
                "${ENV_VAR}={} (not an executable file)",
                p.display()
            ));
        }
        _ => tried.push(format!("${ENV_VAR} (not set)")),
    }
    let mut venvs = Vec::new();
    if let Some(cwd) = &l.cwd {
        venvs.push(cwd.join(".venv/bin/envoy"));
    }
    if let Some(exe) = &l.exe {
        // target/<profile>/meshdrill and target/<profile>/deps/<test binary>.
        for up in exe.ancestors().skip(1).take(4) {
            let p = up.join(".venv/bin/envoy");
            if !venvs.contains(&p) {
                venvs.push(p);
            }
        }
    }
    for p in &venvs {
        if is_executable(p) {
            return Ok(p.clone());
        }
    }
    tried.push(format!(
        "the project virtualenv ({})",
        venvs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(path) = &l.path {
        for dir in std::env::split_paths(path) {
            let p = dir.join("envoy");
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    tried.push("envoy on PATH".into());
    Err(MeshError::EnvoyNotFound { tried })
}

/// A regular file with an execute bit (what `shutil.which` and a shell accept).
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Files of one Envoy under the state directory.
#[derive(Debug, Clone)]
pub struct EnvoyFiles {
    pub bootstrap: PathBuf,
    pub xds_dir: PathBuf,
    pub rds_dir: PathBuf,
    pub admin_address: PathBuf,
    pub log: PathBuf,
}

impl EnvoyFiles {
    pub fn new(dir: &Path) -> Self {
        Self {
            bootstrap: dir.join("envoy-bootstrap.json"),
            xds_dir: dir.join("xds"),
            rds_dir: dir.join("xds").join("rds"),
            admin_address: dir.join("envoy-admin.address"),
            log: dir.join("envoy.log"),
        }
    }
    pub fn lds(&self) -> PathBuf {
        self.xds_dir.join("lds.json")
    }
    pub fn cds(&self) -> PathBuf {
        self.xds_dir.join("cds.json")
    }
}

/// The static bootstrap: admin on a loopback port chosen by the kernel, LDS and CDS
/// from watched files.
pub fn bootstrap(files: &EnvoyFiles) -> Value {
    let source = |path: PathBuf| {
        json!({
            "path_config_source": {
                "path": path.display().to_string(),
                "watched_directory": {"path": files.xds_dir.display().to_string()}
            },
            "resource_api_version": "V3"
        })
    };
    json!({
        "node": {"id": "meshdrill", "cluster": "meshdrill"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"lds_config": source(files.lds()), "cds_config": source(files.cds())}
    })
}

/// Writes `content` to `path` through a temporary file in the same directory and a
/// rename, so a watcher sees one complete file.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), MeshError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, content).map_err(MeshError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(MeshError::io(path))
}

/// The command line that starts Envoy on `files`. Envoy leads its own process group:
/// a Ctrl-C in a terminal goes to the whole foreground group, and only meshdrill may
/// react to it (roll back through Envoy, then stop it) — an Envoy that died of the same
/// SIGINT would leave nothing to roll back through. It still dies with meshdrill
/// (parent-death signal).
pub fn command(envoy: &Path, files: &EnvoyFiles) -> Command {
    let mut c = Command::new(envoy);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.arg("-c")
        .arg(&files.bootstrap)
        .arg("--disable-hot-restart")
        .arg("--reject-unknown-dynamic-fields")
        .arg("--admin-address-path")
        .arg(&files.admin_address)
        .args(["--log-level", "warning", "--concurrency", "2"])
        .args(["--file-flush-interval-msec", "250"])
        .stdin(Stdio::null());
    c
}

/// Waits until Envoy wrote its admin address and `/ready` answers LIVE.
/// A cancellation of `cancel` ends the wait with [`MeshError::Interrupted`].
pub fn wait_ready(
    child: &mut Child,
    files: &EnvoyFiles,
    timeout: Duration,
    cancel: Option<&crate::cancel::Cancel>,
) -> Result<SocketAddr, MeshError> {
    let start = Instant::now();
    let not_ready = |reason: String| MeshError::EnvoyNotReady {
        reason,
        log: files.log.clone(),
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(not_ready(format!(
                "Envoy exited with {status}: {}",
                log_tail(&files.log, 5)
            )));
        }
        if let Ok(text) = std::fs::read_to_string(&files.admin_address)
            && let Ok(addr) = text.trim().parse::<SocketAddr>()
            && let Ok((200, body)) = get(addr, "/ready")
            && body.trim() == "LIVE"
        {
            return Ok(addr);
        }
        if cancel.is_some_and(crate::cancel::Cancel::is_cancelled) {
            return Err(MeshError::Interrupted);
        }
        if start.elapsed() > timeout {
            return Err(not_ready(format!(
                "not LIVE after {} ms",
                timeout.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a log file, joined with " | ".
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A GET on the admin interface: (status, body). Loopback only, 5 s timeout.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), MeshError> {
    let err = |reason: String| MeshError::Admin {
        path: path.to_string(),
        reason,
    };
    if !addr.ip().is_loopback() {
        return Err(err(format!("{addr} is not a loopback address")));
    }
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| err(e.to_string()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| err(e.to_string()))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| err(e.to_string()))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err("malformed response".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| err("malformed status line".into()))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}

/// GET returning JSON; non-200 is an error.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Value, MeshError> {
    let (status, body) = get(addr, path)?;
    if status != 200 {
        return Err(MeshError::Admin {
            path: path.into(),
            reason: format!("HTTP {status}: {}", body.trim()),
        });
    }
    serde_json::from_str(&body).map_err(|e| MeshError::Admin {
        path: path.into(),
        reason: format!("not JSON: {e}"),
    })
}

/// Bound ports of listeners by name (`/listeners?format=json`).
pub fn listener_ports(addr: SocketAddr) -> Result<Vec<(String, u16)>, MeshError> {
    let v = get_json(addr, "/listeners?format=json")?;
    let mut out = Vec::new();
    for l in v
        .get("listener_statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = l.get("name").and_then(Value::as_str).unwrap_or_default();
        let port = l
            .pointer("/local_address/socket_address/port_value")
            .and_then(Value::as_u64);
        if let Some(p) = port.and_then(|p| u16::try_from(p).ok()) {
            out.push((name.to_string(), p));
        }
    }
    Ok(out)
}

/// Active `version_info` of each dynamic route configuration.
pub fn route_versions(addr: SocketAddr) -> Result<Vec<(String, String)>, MeshError> {
    let v = get_json(addr, "/config_dump?resource=dynamic_route_configs")?;
    let mut out = Vec::new();
    for c in v
        .get("configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .pointer("/route_config/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ver = c
            .get("version_info")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.push((name.to_string(), ver.to_string()));
    }
    Ok(out)
}

/// The active route configuration named `name`.
pub fn active_route_config(addr: SocketAddr, name: &str) -> Result<Option<Value>, MeshError> {
    let v = get_json(addr, "/config_dump?resource=dynamic_route_configs")?;
    Ok(v.get("configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.pointer("/route_config/name").and_then(Value::as_str) == Some(name))
        .and_then(|c| c.get("route_config").cloned()))
}

/// Rejection messages Envoy logged after byte `offset` of its log.
pub fn rejections_since(log: &Path, offset: u64) -> Vec<String> {
    let Ok(bytes) = std::fs::read(log) else {
        return Vec::new();
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .filter(|l| l.contains("rejected"))
        .map(|l| match l.split_once("rejected: ") {
            Some((_, reason)) => reason.trim().to_string(),
            None => l.trim().to_string(),
        })
        .collect()
}

/// Current size of a file (0 if absent).
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(dir: &Path, rel: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn chunked_bodies_never_panic() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
        // Malformed input stops at the first bad chunk with what came before it.
        for (bad, want) in [
            ("zz\r\nabc", ""),
            ("5\r\nab", ""),
            ("2\r\n\u{e9}x\r\n", "\u{e9}"),
            ("1\r\n\u{e9}\r\n", ""),
            ("", ""),
            ("3\r\nabc\r\nzz\r\n", "abc"),
        ] {
            assert_eq!(dechunk(bad), want, "{bad:?}");
        }
    }

    #[test]
    fn lookup_order_and_an_error_naming_all_four_places() {
        let t = tempfile::tempdir().expect("tmp");
        let empty = Lookup {
            env: None,
            cwd: Some(t.path().join("cwd")),
            exe: Some(t.path().join("repo/target/debug/meshdrill")),
            path: Some(t.path().join("bin").into_os_string()),
            explicit: None,
        };
        let e = find_envoy_in(&empty).expect_err("none").to_string();
        for want in [
            "$MESHDRILL_ENVOY",
            "cwd/.venv/bin/envoy",
            "repo/.venv/bin/envoy",
            "envoy on PATH",
            "make envoy",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let on_path = exec(t.path(), "bin/envoy");
        assert_eq!(find_envoy_in(&empty).expect("path"), on_path);
        let repo = exec(t.path(), "repo/.venv/bin/envoy");
        assert_eq!(find_envoy_in(&empty).expect("repo"), repo);
        let cwd = exec(t.path(), "cwd/.venv/bin/envoy");
        assert_eq!(find_envoy_in(&empty).expect("cwd"), cwd);
        let env = exec(t.path(), "env/envoy");
        let with_env = Lookup {
            env: Some(env.clone().into_os_string()),
            ..empty.clone()
        };
        assert_eq!(find_envoy_in(&with_env).expect("env"), env);
        let explicit = Lookup {
            explicit: Some(t.path().join("nope")),
            ..with_env
        };
        assert!(
            find_envoy_in(&explicit)
                .expect_err("explicit")
                .to_string()
                .contains("--envoy")
        );
    }
}
