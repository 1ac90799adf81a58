//! Istio's validating webhook, for the kinds the local mesh reads: VirtualService
//! ([`vs`]), DestinationRule ([`destination_rule`]) and Gateway ([`gateway`]), with
//! shared rules for hosts, ports, durations, header names and string matches
//! ([`common`]). The rules follow Istio 1.26 (`pkg/config/validation/validation.go`,
//! `virtualservice.go`, `agent/validation.go` at tag 1.26.8); each rule names the Go
//! function it follows. Field names and types come from the CRD schema
//! ([`super::schema`]).
//!
//! Owns: the [`Issue`] type (file, line, field path, message, [`Severity`]) and the
//! entry point [`validate`] that dispatches on `kind`. Pure: no I/O, no printing, no
//! panics on any input.

use std::fmt;

use serde_json::Value;

use super::manifest::{Document, json_type};
use super::schema::{self, Shape};

mod common;
mod destination_rule;
mod gateway;
mod vs;

#[cfg(test)]
mod tests;

pub use destination_rule::validate_destination_rule;
pub use gateway::validate_gateway;
pub use vs::validate_virtual_service;

/// The `networking.istio.io` API versions meshdrill reads (VirtualService,
/// DestinationRule and Gateway are served at all three).
pub const VS_API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// How bad an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Istio's webhook (or the CRD schema) rejects the object.
    Error,
    /// Istio accepts the object, but Envoy rejects the configuration istiod makes
    /// from it (Envoy's own proto validation, e.g. an abort `httpStatus: 600`): on a
    /// cluster the proxies NACK the push; the local mesh refuses it.
    EnvoyRejects,
    /// Istio accepts the object with a warning (`validation.WrapWarning`).
    Warning,
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `file:line`.
    pub location: String,
    /// `spec.http[0].fault.abort.httpStatus`.
    pub field: String,
    pub message: String,
    pub severity: Severity,
}

impl Issue {
    /// Istio rejects the object.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Istio rejects it, or Envoy would reject what istiod makes of it: the local
    /// mesh refuses to load it.
    pub fn blocks_envoy(&self) -> bool {
        self.severity != Severity::Warning
    }

    /// `error` or `warning`, as printed before the issue.
    pub fn label(&self) -> &'static str {
        match self.severity {
            Severity::Error => "error",
            Severity::EnvoyRejects | Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.field, self.message)
    }
}

/// Validates one document of a kind meshdrill knows (VirtualService, DestinationRule,
/// Gateway in `networking.istio.io`); `None` for any other kind.
pub fn validate(doc: &Document) -> Option<Vec<Issue>> {
    if !doc.api_version().starts_with("networking.istio.io/") {
        return None;
    }
    match doc.kind() {
        "VirtualService" => Some(validate_virtual_service(doc)),
        "DestinationRule" => Some(validate_destination_rule(doc)),
        "Gateway" => Some(validate_gateway(doc)),
        _ => None,
    }
}

/// Turns `/spec/http/0/fault` into `spec.http[0].fault`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

// === impl Checker ===

/// Collects the issues of one document, each with the pointer of its field.
pub(super) struct Checker<'a> {
    doc: &'a Document,
    issues: Vec<(String, Issue)>,
}

impl<'a> Checker<'a> {
    fn new(doc: &'a Document) -> Self {
        Self {
            doc,
            issues: Vec::new(),
        }
    }

    fn push(&mut self, pointer: &str, severity: Severity, message: impl Into<String>) {
        self.issues.push((
            pointer.to_string(),
            Issue {
                location: self.doc.locate(pointer),
                field: dotted(pointer),
                message: message.into(),
                severity,
            },
        ));
    }

    fn issue(&mut self, pointer: &str, message: impl Into<String>) {
        self.push(pointer, Severity::Error, message);
    }

    fn warn(&mut self, pointer: &str, message: impl Into<String>) {
        self.push(pointer, Severity::Warning, message);
    }

    fn get(&self, pointer: &str) -> Option<&'a Value> {
        self.doc.value.pointer(pointer).filter(|v| !v.is_null())
    }

    /// The string at `pointer`; `None` if absent or not a string (the schema check
    /// reports the wrong type).
    fn str_at(&self, pointer: &str) -> Option<&'a str> {
        self.get(pointer).and_then(Value::as_str)
    }

    /// The non-empty list at `pointer` (else empty).
    fn list_at(&self, pointer: &str) -> &'a [Value] {
        self.get(pointer)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    fn int_at(&self, pointer: &str) -> Option<i64> {
        self.get(pointer).and_then(Value::as_i64)
    }

    fn bool_at(&self, pointer: &str) -> bool {
        self.get(pointer).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Set and not empty (proto3: an empty string or list is unset).
    fn set(&self, pointer: &str) -> bool {
        match self.get(pointer) {
            None => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        }
    }

    fn expect_type(&mut self, pointer: &str, v: &Value, want: &str, ok: bool) -> bool {
        if !ok {
            self.issue(pointer, format!("expected {want}, found {}", json_type(v)));
        }
        ok
    }

    /// `apiVersion`, `metadata.name`, and the annotations Istio's webhook rejects
    /// (validateMetadata, checkDryRunAnnotation).
    fn header(&mut self, kind: &str) {
        let api = self.doc.api_version();
        if !VS_API_VERSIONS.contains(&api) {
            self.issue(
                "/apiVersion",
                format!(
                    "unsupported apiVersion {api:?} for {kind}: use one of {}",
                    VS_API_VERSIONS.join(", ")
                ),
            );
        }
        match self.get("/metadata/name") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => self.issue("/metadata/name", "metadata.name is required"),
        }
        // Istio 1.26 validateMetadata: constants.AlwaysReject.
        let reject = "/metadata/annotations/internal.istio.io~1webhook-always-reject";
        if self.get(reject).is_some() {
            self.issue(
                reject,
                "\"internal.istio.io/webhook-always-reject\" annotation found: Istio rejects the object",
            );
        }
        // Istio 1.26 checkDryRunAnnotation: only AuthorizationPolicy takes it.
        let dry = "/metadata/annotations/istio.io~1dry-run";
        if self.get(dry).is_some() {
            self.issue(
                dry,
                format!("{kind} does not support the istio.io/dry-run annotation (only AuthorizationPolicy does): remove it"),
            );
        }
    }

    /// `spec`, required and a mapping.
    fn spec(&mut self) -> Option<&'a Value> {
        let Some(spec) = self.get("/spec") else {
            self.issue("/spec", "spec is required");
            return None;
        };
        if !self.expect_type("/spec", spec, "a mapping", spec.is_object()) {
            return None;
        }
        Some(spec)
    }

    /// Unknown fields and wrong types (Istio's structural schema): every unknown
    /// field, and each wrong type that a rule did not already report (on the field
    /// itself or inside it); then every issue in the order of the file.
    fn finish(mut self, shape: &Shape) -> Vec<Issue> {
        let mut extra = Vec::new();
        for m in schema::check(&self.doc.value, shape) {
            let within = |p: &String| {
                *p == m.pointer
                    || (p.starts_with(&m.pointer)
                        && p.as_bytes().get(m.pointer.len()) == Some(&b'/'))
            };
            if m.unknown || !self.issues.iter().any(|(p, _)| within(p)) {
                extra.push((m.unknown, m.pointer, m.message));
            }
        }
        let found = std::mem::take(&mut self.issues);
        for (_, p, message) in extra.iter().filter(|e| e.0) {
            self.issue(p, message.clone());
        }
        // An unknown field first: it is often why a rule below fails (`attemps`).
        self.issues.extend(found);
        for (_, p, message) in extra.iter().filter(|e| !e.0) {
            self.issue(p, message.clone());
        }
        let doc = self.doc;
        self.issues
            .sort_by_key(|(p, _)| doc.line_of(p).unwrap_or(u64::MAX));
        self.issues.into_iter().map(|(_, i)| i).collect()
    }
}
