//! What kube-apiserver does to a VirtualService write after the patch is applied and
//! before it is stored, for the fields meshdrill writes: the CRD's structural schema
//! (types only), then Istio's validating webhook, then any stricter webhook a test
//! queues with [`FakeKube::webhook_denies_next`].
//!
//! Shapes, as the real servers send them:
//! - schema: 422 Invalid, `VirtualService.networking.istio.io "NAME" is invalid:
//!   spec.http[0].fault.abort.httpStatus: Invalid value: "string":
//!   spec.http[0].fault.abort.httpStatus in body must be of type integer: "string"`
//!   (several errors: `is invalid: [a, b]`), one `details.causes` entry per field
//!   (apiextensions-apiserver, kube-openapi's validate errors);
//! - a webhook's denial: `admission webhook "validation.istio.io" denied the request:
//!   configuration is invalid: …`, code 400 unless the webhook set one, no reason, no
//!   details (apiserver admission/plugin/webhook/errors `ToStatusErr`); Istio's messages
//!   are from pkg/config/validation (`validatePercentage`, `validateHTTPStatus`,
//!   `ValidateDuration`, `validateHTTPRetry`), one error as is, several as
//!   `N errors occurred:\n\t* a\n\t* b`.
//!
//! Order as in the apiserver: schema validation first, validating webhooks after it.

use serde_json::{Value, json};

use super::{FakeKube, GROUP, Resp, State, status};

/// A denial queued by [`FakeKube::webhook_denies_next`].
#[derive(Debug, Clone)]
pub(super) struct Denial {
    webhook: String,
    code: u16,
    message: String,
}

impl FakeKube {
    /// The next write (POST, PUT, PATCH) of a VirtualService that passes the schema and
    /// Istio's webhook is denied by admission webhook `webhook` with HTTP `code` and
    /// `message` — an operator's stricter policy (e.g. Gatekeeper answers 403).
    pub fn webhook_denies_next(&self, webhook: &str, code: u16, message: &str) {
        self.lock().denials.push(Denial {
            webhook: webhook.into(),
            code,
            message: message.into(),
        });
    }
}

/// The answer kube-apiserver gives instead of storing `obj`, if any.
pub(super) fn admit(st: &mut State, name: &str, obj: &Value) -> Option<Resp> {
    let errors = schema_errors(obj);
    if !errors.is_empty() {
        return Some(invalid(name, &errors));
    }
    let problems = crate::common::istio_rules::webhook_problems(obj);
    if !problems.is_empty() {
        return Some(denied(
            "validation.istio.io",
            400,
            &format!("configuration is invalid: {}", multi_error(&problems)),
        ));
    }
    if !st.denials.is_empty() {
        let d = st.denials.remove(0);
        return Some(denied(&d.webhook, d.code, &d.message));
    }
    None
}

// === The CRD's structural schema (types) ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }
}

/// The JSON type of a value as kube-openapi names it.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches(t: Type, v: &Value) -> bool {
    match t {
        // An integer is a number too.
        Type::Number => v.is_number(),
        _ => type_of(v) == t.name(),
    }
}

/// One schema error: (field path, value's type, wanted type).
struct TypeError {
    field: String,
    got: &'static str,
    want: Type,
}

fn check(errors: &mut Vec<TypeError>, field: &str, v: Option<&Value>, want: Type) -> bool {
    match v {
        None => false,
        Some(v) if matches(want, v) => true,
        Some(v) => {
            errors.push(TypeError {
                field: field.into(),
                got: type_of(v),
                want,
            });
            false
        }
    }
}

fn percentage(errors: &mut Vec<TypeError>, at: &str, holder: &Value) {
    let p = format!("{at}.percentage");
    if check(errors, &p, holder.get("percentage"), Type::Object) {
        check(
            errors,
            &format!("{p}.value"),
            holder.pointer("/percentage/value"),
            Type::Number,
        );
    }
}

/// The type errors of the fields meshdrill writes (spec.http[]: name, timeout,
/// retries, fault, route destinations and weights, match).
fn schema_errors(obj: &Value) -> Vec<TypeError> {
    let mut e = Vec::new();
    let Some(spec) = obj.get("spec") else {
        return e;
    };
    if !check(&mut e, "spec", Some(spec), Type::Object) {
        return e;
    }
    if !check(&mut e, "spec.http", spec.get("http"), Type::Array) {
        return e;
    }
    for (i, r) in spec["http"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.http[{i}]");
        if !check(&mut e, &at, Some(r), Type::Object) {
            continue;
        }
        check(&mut e, &format!("{at}.name"), r.get("name"), Type::String);
        check(
            &mut e,
            &format!("{at}.timeout"),
            r.get("timeout"),
            Type::String,
        );
        check(&mut e, &format!("{at}.match"), r.get("match"), Type::Array);
        let retries = format!("{at}.retries");
        if check(&mut e, &retries, r.get("retries"), Type::Object) {
            let x = &r["retries"];
            check(
                &mut e,
                &format!("{retries}.attempts"),
                x.get("attempts"),
                Type::Integer,
            );
            check(
                &mut e,
                &format!("{retries}.perTryTimeout"),
                x.get("perTryTimeout"),
                Type::String,
            );
            check(
                &mut e,
                &format!("{retries}.retryOn"),
                x.get("retryOn"),
                Type::String,
            );
        }
        let fault = format!("{at}.fault");
        if check(&mut e, &fault, r.get("fault"), Type::Object) {
            let delay = format!("{fault}.delay");
            if check(&mut e, &delay, r.pointer("/fault/delay"), Type::Object) {
                let d = &r["fault"]["delay"];
                check(
                    &mut e,
                    &format!("{delay}.fixedDelay"),
                    d.get("fixedDelay"),
                    Type::String,
                );
                check(
                    &mut e,
                    &format!("{delay}.percent"),
                    d.get("percent"),
                    Type::Integer,
                );
                percentage(&mut e, &delay, d);
            }
            let abort = format!("{fault}.abort");
            if check(&mut e, &abort, r.pointer("/fault/abort"), Type::Object) {
                let a = &r["fault"]["abort"];
                check(
                    &mut e,
                    &format!("{abort}.httpStatus"),
                    a.get("httpStatus"),
                    Type::Integer,
                );
                check(
                    &mut e,
                    &format!("{abort}.grpcStatus"),
                    a.get("grpcStatus"),
                    Type::String,
                );
                percentage(&mut e, &abort, a);
            }
        }
        if check(&mut e, &format!("{at}.route"), r.get("route"), Type::Array) {
            for (j, d) in r["route"].as_array().into_iter().flatten().enumerate() {
                let dest = format!("{at}.route[{j}]");
                if check(&mut e, &dest, Some(d), Type::Object) {
                    check(
                        &mut e,
                        &format!("{dest}.weight"),
                        d.get("weight"),
                        Type::Integer,
                    );
                    check(
                        &mut e,
                        &format!("{dest}.destination"),
                        d.get("destination"),
                        Type::Object,
                    );
                }
            }
        }
    }
    e
}

/// The 422 of a schema violation.
fn invalid(name: &str, errors: &[TypeError]) -> Resp {
    let one = |t: &TypeError| {
        format!(
            "Invalid value: {got:?}: {field} in body must be of type {want}: {got:?}",
            got = t.got,
            field = t.field,
            want = t.want.name()
        )
    };
    let texts: Vec<String> = errors
        .iter()
        .map(|t| format!("{}: {}", t.field, one(t)))
        .collect();
    let list = if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("[{}]", texts.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|t| json!({"reason": "FieldValueInvalid", "message": one(t), "field": t.field}))
        .collect();
    status(
        422,
        "Invalid",
        &format!("VirtualService.{GROUP} {name:?} is invalid: {list}"),
        Some(json!({"name": name, "group": GROUP, "kind": "VirtualService", "causes": causes})),
    )
}

// === Istio's validating webhook: common/istio_rules.rs ===

/// Istio's multierror format: one error as is, several as a list.
fn multi_error(problems: &[String]) -> String {
    if problems.len() == 1 {
        return problems[0].clone();
    }
    let items: Vec<String> = problems.iter().map(|p| format!("\t* {p}")).collect();
    format!(
        "{} errors occurred:\n{}\n\n",
        problems.len(),
        items.join("\n")
    )
}

/// A validating webhook's denial as kube-apiserver relays it (`ToStatusErr`).
fn denied(webhook: &str, code: u16, message: &str) -> Resp {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("admission webhook {webhook:?} denied the request: {message}"),
        "code": code.max(400),
    });
    // Only a code the webhook set (Gatekeeper: 403) carries a reason with it.
    if code == 403 {
        s["reason"] = json!("Forbidden");
    }
    super::reply(code.max(400), &s)
}
