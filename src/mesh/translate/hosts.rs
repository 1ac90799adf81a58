//! Host resolution and virtual-host domains: which service a VirtualService host names,
//! and the Host header forms a virtual host answers on each hop (istiod's
//! ResolveShortnameToFQDN and generateVirtualHostDomains).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Translator, vs_hosts};
use crate::istio::patch::object_label;
use crate::istio::spec::host_subset_of;
use crate::mesh::spec::ServiceSpec;

impl Translator<'_> {
    /// The mesh service a host names, resolved in `ns` as istiod does: only when it
    /// resolves to `<service>.<mesh namespace>.svc.cluster.local`.
    pub(super) fn service_for(&self, host: &str, ns: &str) -> Option<&ServiceSpec> {
        let fqdn = resolve_host(host, ns);
        self.spec
            .services
            .iter()
            .find(|s| service_fqdn(&s.name, &self.spec.namespace) == fqdn)
    }

    /// The services a (resolved) VirtualService host names; wildcards name every
    /// service they match.
    pub(super) fn services_named(&self, host: &str, ns: &str) -> Vec<&str> {
        let fqdn = resolve_host(host, ns);
        self.spec
            .service_names()
            .into_iter()
            .filter(|s| host_subset_of(&service_fqdn(s, &self.spec.namespace), &fqdn))
            .collect()
    }

    pub(super) fn service_port(&self, name: &str) -> u16 {
        self.spec
            .services
            .iter()
            .find(|s| s.name == name)
            .map_or(80, |s| s.port)
    }

    /// At a gateway istiod matches the VirtualService's hosts as resolved: a short
    /// name only as its FQDN (`repeater` → `repeater.default.svc.cluster.local`). One
    /// domain per host, no port forms: the route configuration ignores the port
    /// (gateway.go buildGatewayHTTPRouteConfig).
    pub(super) fn gateway_domains(
        &mut self,
        vs: &Value,
        used: &mut BTreeSet<String>,
    ) -> Vec<String> {
        let ns = vs_namespace(vs);
        let mut out = Vec::new();
        for h in vs_hosts(vs) {
            let fqdn = resolve_host(h, ns);
            self.claim(vs, h, vec![fqdn], used, &mut out);
        }
        out
    }

    /// On a sidecar a host naming a mesh service gets the service's whole alias set
    /// (as istiod's sidecar virtual hosts); other hosts keep their literal domains.
    pub(super) fn sidecar_domains(
        &mut self,
        vs: &Value,
        used: &mut BTreeSet<String>,
    ) -> Vec<String> {
        let ns = vs_namespace(vs);
        let mut out = Vec::new();
        for h in vs_hosts(vs) {
            let services: Vec<String> = self
                .services_named(h, ns)
                .into_iter()
                .map(String::from)
                .collect();
            let fqdn = resolve_host(h, ns);
            let forms = if !services.is_empty() && !h.contains('*') {
                services.iter().flat_map(|s| self.aliases(s)).collect()
            } else {
                if services.is_empty() && !h.contains('*') {
                    self.warnings.push(format!(
                        "{}: host {h} ({fqdn}) is not a service of the mesh (namespace {}); it is routed by its literal name only",
                        object_label(vs),
                        self.spec.namespace
                    ));
                }
                let mut f: Vec<String> = vec![fqdn];
                for s in &services {
                    f.extend(self.aliases(s));
                }
                f
            };
            self.claim(vs, h, forms, used, &mut out);
        }
        out
    }

    pub(super) fn claim(
        &mut self,
        vs: &Value,
        h: &str,
        forms: Vec<String>,
        used: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        let mut fresh: Vec<String> = forms
            .into_iter()
            .filter(|f| !out.contains(f) && used.insert(f.clone()))
            .collect();
        if fresh.is_empty() {
            self.warnings.push(format!(
                "{}: host {h} is already routed by another VirtualService on this hop; ignored here",
                object_label(vs)
            ));
        }
        out.append(&mut fresh);
    }

    /// A service's Host header forms on a sidecar, as istiod's
    /// generateVirtualHostDomains for a proxy in the service's namespace: the FQDN, then
    /// `svc`, `svc.ns.svc`, `svc.ns` — no port forms, as the sidecar's route
    /// configuration ignores the port (`ignore_port_in_host_matching`).
    pub(super) fn aliases(&self, name: &str) -> Vec<String> {
        let ns = &self.spec.namespace;
        vec![
            service_fqdn(name, ns),
            name.to_string(),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}"),
        ]
    }

    pub(super) fn service_domains(&self, name: &str, used: &mut BTreeSet<String>) -> Vec<String> {
        self.aliases(name)
            .into_iter()
            .filter(|f| used.insert(f.clone()))
            .collect()
    }
}

/// A VirtualService's namespace (`default` when absent).
pub(super) fn vs_namespace(vs: &Value) -> &str {
    vs.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

/// A service's FQDN in a namespace.
pub fn service_fqdn(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.svc.cluster.local")
}

/// istiod's ResolveShortnameToFQDN: `*`, IP addresses and names with a dot stay as
/// they are; a short name becomes `<name>.<namespace>.svc.cluster.local`.
pub fn resolve_host(host: &str, ns: &str) -> String {
    if host.is_empty()
        || host == "*"
        || host.contains('.')
        || host.contains(':')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return host.to_string();
    }
    service_fqdn(host, ns)
}
