//! Istio Gateway objects as the local mesh reads them: the servers (port, protocol,
//! hosts) an ingress gateway listens on. Only the fields that decide which
//! VirtualService answers which request are kept; TLS settings only as "this server
//! terminates TLS" (such servers are not served, with a warning).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::MeshError;
use super::parse::invalid;
use crate::istio::manifest::Document;

/// A Gateway: `namespace/name` and its servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    /// `spec.selector`: the gateway pods' labels.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<GatewayServer>,
}

/// One `spec.servers[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayServer {
    /// `port.number`.
    pub port: u16,
    /// `port.name` (or the server's `name`), for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// `port.protocol`, upper case (HTTP, HTTPS, HTTP2, GRPC, TLS, TCP, ...).
    pub protocol: String,
    /// `hosts` as written: `host`, `ns/host`, `*/host`, `./host` (made `ns/host`).
    pub hosts: Vec<String>,
    /// Whether the server has a `tls` block.
    #[serde(default)]
    pub tls: bool,
}

impl Gateway {
    /// `namespace/name`, the form istiod binds VirtualServices to.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl GatewayServer {
    /// Plain-text HTTP, which the local ingress serves (HTTP, HTTP2, GRPC, without a
    /// `tls` block).
    pub fn is_plain_http(&self) -> bool {
        matches!(self.protocol.as_str(), "HTTP" | "HTTP2" | "GRPC") && !self.tls
    }

    /// How messages name the server: `port 8080 (http-alt)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("port {} ({n}, {})", self.port, self.protocol),
            None => format!("port {} ({})", self.port, self.protocol),
        }
    }
}

/// Reads a Gateway document; a missing or malformed server field names file, line
/// and field.
pub(super) fn parse_gateway(d: &Document) -> Result<Gateway, MeshError> {
    let v = &d.value;
    let name = d.name().to_string();
    if name.is_empty() {
        return Err(invalid(d, "/metadata/name", "metadata.name is required"));
    }
    let namespace = d.namespace().unwrap_or("default").to_string();
    let selector = v
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let Some(servers) = v.pointer("/spec/servers").and_then(Value::as_array) else {
        return Err(invalid(
            d,
            "/spec/servers",
            "a Gateway needs spec.servers (a list)",
        ));
    };
    let mut out = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let at = |f: &str| format!("/spec/servers/{i}{f}");
        let port = s
            .pointer("/port/number")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(d, &at("/port/number"), "a port number 1-65535"))?;
        let protocol = s
            .pointer("/port/protocol")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                invalid(
                    d,
                    &at("/port/protocol"),
                    "the server's protocol (HTTP, HTTPS, ...)",
                )
            })?
            .to_ascii_uppercase();
        let hosts: Vec<String> = match s.get("hosts").and_then(Value::as_array) {
            Some(h) if !h.is_empty() => h
                .iter()
                .enumerate()
                .map(|(j, h)| {
                    h.as_str()
                        .filter(|h| !h.is_empty())
                        .map(|h| match h.strip_prefix("./") {
                            Some(rest) => format!("{namespace}/{rest}"),
                            None => h.to_string(),
                        })
                        .ok_or_else(|| invalid(d, &at(&format!("/hosts/{j}")), "a host name"))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(invalid(
                    d,
                    &at("/hosts"),
                    "a server needs at least one host",
                ));
            }
        };
        let name = s
            .pointer("/port/name")
            .or_else(|| s.get("name"))
            .and_then(Value::as_str)
            .map(String::from);
        out.push(GatewayServer {
            port,
            name,
            protocol,
            hosts,
            tls: s.get("tls").is_some_and(|t| !t.is_null()),
        });
    }
    Ok(Gateway {
        name,
        namespace,
        selector,
        servers: out,
    })
}
