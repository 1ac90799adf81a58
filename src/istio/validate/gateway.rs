//! Gateway, as Istio 1.26's webhook validates it: `ValidateGateway`, `validateServer`,
//! `validateServerPort`, `validateServerBind`, `validateTLSOptions` and
//! `agent.ValidateNamespaceSlashWildcardHostname` for server hosts.

use serde_json::Value;

use super::common::{is_dns1123_label, is_ip, wildcard_domain};
use super::{Checker, Issue};
use crate::istio::manifest::Document;
use crate::istio::schema;

/// Validates one Gateway document; an empty result means Istio accepts it.
pub fn validate_gateway(doc: &Document) -> Vec<Issue> {
    let mut c = Checker::new(doc);
    c.header("Gateway");
    if c.spec().is_some() {
        c.gateway(doc.name());
    }
    c.finish(&schema::GATEWAY)
}

const UNIX: &str = "unix://";

/// protocol.Parse, for a server port: `None` for an unsupported protocol.
fn protocol(s: &str) -> Option<&'static str> {
    let all = [
        "TCP",
        "UDP",
        "GRPC",
        "GRPC-WEB",
        "HTTP",
        "HTTP_PROXY",
        "HTTP2",
        "HTTPS",
        "TLS",
        "MONGO",
        "REDIS",
        "MYSQL",
    ];
    all.into_iter().find(|p| p.eq_ignore_ascii_case(s))
}

fn is_http(p: &str) -> bool {
    matches!(p, "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB")
}

fn is_tls(p: &str) -> bool {
    matches!(p, "HTTPS" | "TLS")
}

/// agent.validateSidecarOrGatewayHostnamePart, gateway side.
fn host_part(h: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if h != "*" && !h.contains('.') {
        errs.push("short names (non FQDN) are not allowed: use the full name, such as \"reviews.default.svc.cluster.local\", or \"*\"".into());
    }
    if let Err(e) = wildcard_domain(h)
        && !is_ip(h)
    {
        errs.push(e);
    }
    if h.contains('*') && h.len() != 1 && !h.starts_with("*.") {
        errs.push(format!("partial wildcard {h:?} not allowed"));
    }
    errs
}

/// agent.ValidateNamespaceSlashWildcardHostname with isGateway: `host`, or
/// `namespace/host` with the namespace `*`, `.` or a DNS label.
fn server_host(h: &str) -> Vec<String> {
    let Some((ns, host)) = h.split_once('/') else {
        return host_part(h);
    };
    let mut errs = Vec::new();
    if ns.is_empty() || host.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".into());
    }
    if ns != "*" && ns != "." && !is_dns1123_label(ns) {
        errs.push(format!("invalid namespace value {ns:?} in gateway"));
    }
    errs.extend(host_part(host));
    errs
}

impl Checker<'_> {
    /// Istio 1.26 ValidateGateway.
    fn gateway(&mut self, name: &str) {
        if !name.is_empty() && !is_dns1123_label(name) {
            self.issue(
                "/metadata/name",
                format!("invalid gateway name: {name:?} (a DNS-1123 label: no dots)"),
            );
        }
        let servers = self.list_at("/spec/servers");
        if servers.is_empty() {
            self.issue("/spec/servers", "gateway must have at least one server");
        }
        let mut port_names: Vec<&str> = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            let p = format!("/spec/servers/{i}");
            if !s.is_object() {
                self.issue(&p, "server may not be nil");
                continue;
            }
            self.server(&p);
            if s.get("port").is_some_and(Value::is_object) {
                let pn = s
                    .pointer("/port/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if port_names.contains(&pn) {
                    self.issue(
                        &format!("{p}/port/name"),
                        format!("port names in servers must be unique: duplicate name {pn}"),
                    );
                }
                port_names.push(pn);
                let proto = s
                    .pointer("/port/protocol")
                    .and_then(Value::as_str)
                    .and_then(protocol);
                if !proto.is_some_and(is_http) && self.bool_at(&format!("{p}/tls/httpsRedirect")) {
                    self.warn(
                        &format!("{p}/tls/httpsRedirect"),
                        "tls.httpsRedirect should only be used with http servers",
                    );
                }
            }
        }
    }

    /// validateServer.
    fn server(&mut self, p: &str) {
        let hp = format!("{p}/hosts");
        if !self.set(&hp) {
            self.issue(&hp, "server config must contain at least one host (such as \"*\" or \"ns/host.example.com\")");
        }
        for (i, h) in self.list_at(&hp).iter().enumerate() {
            if let Some(h) = h.as_str() {
                for e in server_host(h) {
                    self.issue(&format!("{hp}/{i}"), e);
                }
            }
        }
        let bind = self.str_at(&format!("{p}/bind")).unwrap_or("");
        let port_ok = self.server_port(&format!("{p}/port"), bind);
        // validateServerBind.
        let bp = format!("{p}/bind");
        if let Some(addr) = bind.strip_prefix(UNIX) {
            if addr.is_empty() {
                self.issue(&bp, "unix address must not be empty");
            } else if !addr.starts_with('@') && (!addr.starts_with('/') || addr.ends_with('/')) {
                self.issue(&bp, format!("{addr} is not an absolute path to a file"));
            }
            if self
                .int_at(&format!("{p}/port/number"))
                .is_some_and(|n| n != 0)
            {
                self.issue(
                    &format!("{p}/port/number"),
                    "port number must be 0 for unix domain socket",
                );
            }
        } else if !bind.is_empty() && !is_ip(bind) {
            self.issue(&bp, format!("{bind} is not a valid IP"));
        }
        let tp = format!("{p}/tls");
        self.server_tls(&tp);
        if port_ok {
            let proto = self
                .str_at(&format!("{p}/port/protocol"))
                .and_then(protocol)
                .unwrap_or("");
            let tls = self.get(&tp).is_some();
            if is_tls(proto) && !tls {
                self.issue(p, "server must have TLS settings for HTTPS/TLS protocols");
            } else if !is_tls(proto) && tls {
                if is_http(proto) {
                    let mode = self.str_at(&format!("{tp}/mode")).unwrap_or("PASSTHROUGH");
                    let passthrough = mode == "PASSTHROUGH" || mode == "AUTO_PASSTHROUGH";
                    let certs = ["caCertificates", "privateKey", "serverCertificate"]
                        .iter()
                        .any(|k| self.set(&format!("{tp}/{k}")));
                    if !passthrough || certs {
                        self.issue(&tp, "server cannot have TLS settings for plain text HTTP ports (only httpsRedirect)");
                    }
                } else {
                    self.issue(
                        &tp,
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                    );
                }
            }
        }
    }

    /// validateServerPort; true when the port has no error.
    fn server_port(&mut self, p: &str, bind: &str) -> bool {
        let before = self.issues.len();
        if self.get(p).is_none() {
            self.issue(p, "port is required (number, protocol, name)");
            return false;
        }
        let pp = format!("{p}/protocol");
        let proto = self.str_at(&pp).unwrap_or("");
        if protocol(proto).is_none() {
            self.issue(&pp, format!("invalid protocol {proto:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP"));
        }
        let np = format!("{p}/number");
        if self.int_at(&np).is_some_and(|n| n > 0) || !bind.starts_with(UNIX) {
            self.port_at(&np);
        }
        if self
            .int_at(&format!("{p}/targetPort"))
            .is_some_and(|t| t > 0)
        {
            self.issue(
                &format!("{p}/targetPort"),
                "targetPort has no impact on Gateways",
            );
        }
        if !self.set(&format!("{p}/name")) {
            self.issue(&format!("{p}/name"), "port name must be set");
        }
        self.issues.len() == before
    }

    /// validateTLSOptions (server side).
    fn server_tls(&mut self, p: &str) {
        if self.get(p).is_none() {
            return;
        }
        let set = |c: &Self, k: &str| c.set(&format!("{p}/{k}"));
        let min = self
            .str_at(&format!("{p}/minProtocolVersion"))
            .unwrap_or("");
        if (min == "TLSV1_0" || min == "TLSV1_1") && !set(self, "cipherSuites") {
            self.warn(p, "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.");
        }
        let ciphers: Vec<&str> = self
            .list_at(&format!("{p}/cipherSuites"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut dups: Vec<&str> = ciphers
            .iter()
            .enumerate()
            .filter(|(i, c)| ciphers[..*i].contains(c))
            .map(|(_, c)| *c)
            .collect();
        dups.dedup();
        if !dups.is_empty() {
            self.warn(
                &format!("{p}/cipherSuites"),
                format!("ignoring duplicate cipher suites: {dups:?}"),
            );
        }
        let mode = self.str_at(&format!("{p}/mode")).unwrap_or("PASSTHROUGH");
        let cred = set(self, "credentialName");
        if mode == "ISTIO_MUTUAL" {
            for (k, what) in [
                ("serverCertificate", "server certificate"),
                ("privateKey", "private key"),
                ("caCertificates", "CA bundle"),
                ("credentialName", "credentialName"),
            ] {
                if set(self, k) {
                    self.issue(
                        &format!("{p}/{k}"),
                        format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                    );
                }
            }
            return;
        }
        if (mode == "PASSTHROUGH" || mode == "AUTO_PASSTHROUGH")
            && [
                "caCrl",
                "serverCertificate",
                "privateKey",
                "caCertificates",
                "credentialName",
            ]
            .iter()
            .any(|k| set(self, k))
        {
            self.warn(
                p,
                format!("{mode} mode does not use certificates, they will be ignored"),
            );
        }
        if matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") && cred {
            return;
        }
        if mode == "SIMPLE" {
            if !set(self, "serverCertificate") {
                self.issue(
                    p,
                    "SIMPLE TLS requires a server certificate (or set credentialName)",
                );
            }
            if !set(self, "privateKey") {
                self.issue(
                    p,
                    "SIMPLE TLS requires a private key (or set credentialName)",
                );
            }
        } else if mode == "MUTUAL" || mode == "OPTIONAL_MUTUAL" {
            if !set(self, "serverCertificate") {
                self.issue(
                    p,
                    "MUTUAL TLS requires a server certificate (or set credentialName)",
                );
            }
            if !set(self, "privateKey") {
                self.issue(
                    p,
                    "MUTUAL TLS requires a private key (or set credentialName)",
                );
            }
            if !set(self, "caCertificates") {
                self.issue(
                    p,
                    "MUTUAL TLS requires a client CA bundle (or set credentialName)",
                );
            }
        }
        if set(self, "caCrl") {
            if cred {
                self.issue(&format!("{p}/caCrl"), "CRL is not supported with credentialName. CRL has to be specified in the credential");
            }
            if mode == "SIMPLE" {
                self.issue(
                    &format!("{p}/caCrl"),
                    "CRL is not supported with SIMPLE TLS",
                );
            }
        }
    }
}
