//! The shapes of VirtualService, DestinationRule and Gateway as Istio's CRDs (structural
//! schemas) declare them: every field name, its JSON type and enum values, from istio/api
//! `networking/v1alpha3/{virtual_service,destination_rule,gateway}.proto` at 1.27.9 (the
//! same for v1beta1 and v1; 1.27 adds only fields, e.g. `retryBudget`). The API server rejects (kubectl) or drops unknown
//! fields, so a misspelled `timout` would silently do nothing: meshdrill reports it.
//!
//! Only names and types are checked here; the values Istio's validation allows are
//! checked in [`super::validate`].

use serde_json::Value;

use super::manifest::json_type;

/// The JSON shape of a field.
#[derive(Debug)]
pub enum Shape {
    /// A mapping with exactly these fields.
    Obj(&'static [(&'static str, &'static Shape)]),
    /// A mapping from any string key to values of one shape.
    MapOf(&'static Shape),
    /// A list of values of one shape.
    List(&'static Shape),
    Str,
    /// An unsigned 32-bit integer (protobuf `uint32`).
    U32,
    /// A signed 32-bit integer (protobuf `int32`).
    I32,
    /// A signed 64-bit integer (Kubernetes' `generation`).
    I64,
    /// An unsigned 64-bit integer (protobuf `uint64`).
    U64,
    /// A number (protobuf `double`).
    Num,
    Bool,
    /// A protobuf enum: one of these names (or its number, as protobuf JSON allows).
    Enum(&'static [&'static str]),
    /// Anything (Kubernetes-managed fields meshdrill does not read, and `status`).
    Any,
}

use Shape::*;

static STR: Shape = Str;
static STRS: Shape = List(&STR);
static STR_MAP: Shape = MapOf(&STR);
static ANY: Shape = Any;
static ANYS: Shape = List(&ANY);

static STRING_MATCH: Shape = Obj(&[("exact", &STR), ("prefix", &STR), ("regex", &STR)]);
static STRING_MATCHES: Shape = List(&STRING_MATCH);
static STRING_MATCH_MAP: Shape = MapOf(&STRING_MATCH);
static PORT_SELECTOR: Shape = Obj(&[("number", &U32)]);
static DESTINATION: Shape = Obj(&[("host", &STR), ("subset", &STR), ("port", &PORT_SELECTOR)]);
static PERCENT: Shape = Obj(&[("value", &Num)]);
static HEADER_OPS: Shape = Obj(&[("set", &STR_MAP), ("add", &STR_MAP), ("remove", &STRS)]);
static HEADERS: Shape = Obj(&[("request", &HEADER_OPS), ("response", &HEADER_OPS)]);

static HTTP_MATCH: Shape = Obj(&[
    ("name", &STR),
    ("uri", &STRING_MATCH),
    ("scheme", &STRING_MATCH),
    ("method", &STRING_MATCH),
    ("authority", &STRING_MATCH),
    ("headers", &STRING_MATCH_MAP),
    ("port", &U32),
    ("sourceLabels", &STR_MAP),
    ("gateways", &STRS),
    ("queryParams", &STRING_MATCH_MAP),
    ("ignoreUriCase", &Bool),
    ("withoutHeaders", &STRING_MATCH_MAP),
    ("sourceNamespace", &STR),
    ("statPrefix", &STR),
]);
static HTTP_ROUTE_DESTINATION: Shape = Obj(&[
    ("destination", &DESTINATION),
    ("weight", &I32),
    ("headers", &HEADERS),
]);
static HTTP_REDIRECT: Shape = Obj(&[
    ("uri", &STR),
    ("authority", &STR),
    ("port", &U32),
    ("derivePort", &STR),
    ("scheme", &STR),
    ("redirectCode", &U32),
    ("prefixRewrite", &STR),
]);
static HTTP_DIRECT_RESPONSE: Shape = Obj(&[
    ("status", &U32),
    ("body", &Obj(&[("string", &STR), ("bytes", &STR)])),
]);
static DELEGATE: Shape = Obj(&[("name", &STR), ("namespace", &STR)]);
static HTTP_REWRITE: Shape = Obj(&[
    ("uri", &STR),
    ("authority", &STR),
    (
        "uriRegexRewrite",
        &Obj(&[("match", &STR), ("rewrite", &STR)]),
    ),
]);
static HTTP_RETRY: Shape = Obj(&[
    ("attempts", &I32),
    ("perTryTimeout", &STR),
    ("retryOn", &STR),
    ("retryRemoteLocalities", &Bool),
    ("retryIgnorePreviousHosts", &Bool),
    ("backoff", &STR),
]);
static FAULT_DELAY: Shape = Obj(&[
    ("percent", &I32),
    ("fixedDelay", &STR),
    ("exponentialDelay", &STR),
    ("percentage", &PERCENT),
]);
static FAULT_ABORT: Shape = Obj(&[
    ("httpStatus", &I32),
    ("grpcStatus", &STR),
    ("http2Error", &STR),
    ("percentage", &PERCENT),
]);
static HTTP_FAULT: Shape = Obj(&[("delay", &FAULT_DELAY), ("abort", &FAULT_ABORT)]);
static MIRROR_POLICY: Shape = Obj(&[("destination", &DESTINATION), ("percentage", &PERCENT)]);
static CORS_POLICY: Shape = Obj(&[
    ("allowOrigin", &STRS),
    ("allowOrigins", &STRING_MATCHES),
    ("allowMethods", &STRS),
    ("allowHeaders", &STRS),
    ("exposeHeaders", &STRS),
    ("maxAge", &STR),
    ("allowCredentials", &Bool),
    ("unmatchedPreflights", &STR),
]);
static HTTP_ROUTE: Shape = Obj(&[
    ("name", &STR),
    ("match", &List(&HTTP_MATCH)),
    ("route", &List(&HTTP_ROUTE_DESTINATION)),
    ("redirect", &HTTP_REDIRECT),
    ("directResponse", &HTTP_DIRECT_RESPONSE),
    ("delegate", &DELEGATE),
    ("rewrite", &HTTP_REWRITE),
    ("timeout", &STR),
    ("retries", &HTTP_RETRY),
    ("fault", &HTTP_FAULT),
    ("mirror", &DESTINATION),
    ("mirrors", &List(&MIRROR_POLICY)),
    ("mirrorPercent", &U32),
    ("mirrorPercentage", &PERCENT),
    ("corsPolicy", &CORS_POLICY),
    ("headers", &HEADERS),
]);
static ROUTE_DESTINATION: Shape = Obj(&[("destination", &DESTINATION), ("weight", &I32)]);
static TLS_MATCH: Shape = Obj(&[
    ("sniHosts", &STRS),
    ("destinationSubnets", &STRS),
    ("port", &U32),
    ("sourceLabels", &STR_MAP),
    ("gateways", &STRS),
    ("sourceNamespace", &STR),
]);
static L4_MATCH: Shape = Obj(&[
    ("destinationSubnets", &STRS),
    ("port", &U32),
    ("sourceSubnet", &STR),
    ("sourceLabels", &STR_MAP),
    ("gateways", &STRS),
    ("sourceNamespace", &STR),
]);
static SPEC: Shape = Obj(&[
    ("hosts", &STRS),
    ("gateways", &STRS),
    ("http", &List(&HTTP_ROUTE)),
    (
        "tls",
        &List(&Obj(&[
            ("match", &List(&TLS_MATCH)),
            ("route", &List(&ROUTE_DESTINATION)),
        ])),
    ),
    (
        "tcp",
        &List(&Obj(&[
            ("match", &List(&L4_MATCH)),
            ("route", &List(&ROUTE_DESTINATION)),
        ])),
    ),
    ("exportTo", &STRS),
]);
/// Kubernetes ObjectMeta: what `kubectl get -o yaml` prints must pass.
static METADATA: Shape = Obj(&[
    ("name", &STR),
    ("generateName", &STR),
    ("namespace", &STR),
    ("selfLink", &STR),
    ("uid", &STR),
    ("resourceVersion", &STR),
    ("generation", &I64),
    ("creationTimestamp", &ANY),
    ("deletionTimestamp", &ANY),
    ("deletionGracePeriodSeconds", &I64),
    ("labels", &STR_MAP),
    ("annotations", &STR_MAP),
    ("ownerReferences", &ANYS),
    ("finalizers", &STRS),
    ("managedFields", &ANYS),
]);

/// A whole VirtualService object.
pub static VIRTUAL_SERVICE: Shape = Obj(&[
    ("apiVersion", &STR),
    ("kind", &STR),
    ("metadata", &METADATA),
    ("spec", &SPEC),
    ("status", &ANY),
]);

// === DestinationRule (destination_rule.proto) ===

static U32S: Shape = U32;
static U32_MAP: Shape = MapOf(&U32S);
static DURATION: Shape = Str;
static WORKLOAD_SELECTOR: Shape = Obj(&[("matchLabels", &STR_MAP)]);
static CLIENT_TLS: Shape = Obj(&[
    (
        "mode",
        &Enum(&["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
    ),
    ("clientCertificate", &STR),
    ("privateKey", &STR),
    ("caCertificates", &STR),
    ("credentialName", &STR),
    ("subjectAltNames", &STRS),
    ("sni", &STR),
    ("insecureSkipVerify", &Bool),
    ("caCrl", &STR),
]);
static LOCALITY_LB: Shape = Obj(&[
    (
        "distribute",
        &List(&Obj(&[("from", &STR), ("to", &U32_MAP)])),
    ),
    ("failover", &List(&Obj(&[("from", &STR), ("to", &STR)]))),
    ("failoverPriority", &STRS),
    ("enabled", &Bool),
]);
static LOAD_BALANCER: Shape = Obj(&[
    (
        "simple",
        &Enum(&[
            "UNSPECIFIED",
            "LEAST_CONN",
            "RANDOM",
            "PASSTHROUGH",
            "ROUND_ROBIN",
            "LEAST_REQUEST",
        ]),
    ),
    (
        "consistentHash",
        &Obj(&[
            ("httpHeaderName", &STR),
            (
                "httpCookie",
                &Obj(&[("name", &STR), ("path", &STR), ("ttl", &DURATION)]),
            ),
            ("useSourceIp", &Bool),
            ("httpQueryParameterName", &STR),
            ("ringHash", &Obj(&[("minimumRingSize", &U64)])),
            ("maglev", &Obj(&[("tableSize", &U64)])),
            ("minimumRingSize", &U64),
        ]),
    ),
    ("localityLbSetting", &LOCALITY_LB),
    ("warmupDurationSecs", &DURATION),
    (
        "warmup",
        &Obj(&[
            ("duration", &DURATION),
            ("minimumPercent", &Num),
            ("aggression", &Num),
        ]),
    ),
]);
static CONNECTION_POOL: Shape = Obj(&[
    (
        "tcp",
        &Obj(&[
            ("maxConnections", &I32),
            ("connectTimeout", &DURATION),
            (
                "tcpKeepalive",
                &Obj(&[
                    ("probes", &U32),
                    ("time", &DURATION),
                    ("interval", &DURATION),
                ]),
            ),
            ("maxConnectionDuration", &DURATION),
            ("idleTimeout", &DURATION),
        ]),
    ),
    (
        "http",
        &Obj(&[
            ("http1MaxPendingRequests", &I32),
            ("http2MaxRequests", &I32),
            ("maxRequestsPerConnection", &I32),
            ("maxRetries", &I32),
            ("idleTimeout", &DURATION),
            (
                "h2UpgradePolicy",
                &Enum(&["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
            ),
            ("useClientProtocol", &Bool),
            ("maxConcurrentStreams", &I32),
        ]),
    ),
]);
static OUTLIER_DETECTION: Shape = Obj(&[
    ("consecutiveErrors", &I32),
    ("splitExternalLocalOriginErrors", &Bool),
    ("consecutiveLocalOriginFailures", &U32),
    ("consecutiveGatewayErrors", &U32),
    ("consecutive5xxErrors", &U32),
    ("interval", &DURATION),
    ("baseEjectionTime", &DURATION),
    ("maxEjectionPercent", &I32),
    ("minHealthPercent", &I32),
]);
static PORT_TRAFFIC_POLICY: Shape = Obj(&[
    ("port", &PORT_SELECTOR),
    ("loadBalancer", &LOAD_BALANCER),
    ("connectionPool", &CONNECTION_POOL),
    ("outlierDetection", &OUTLIER_DETECTION),
    ("tls", &CLIENT_TLS),
]);
static TRAFFIC_POLICY: Shape = Obj(&[
    ("loadBalancer", &LOAD_BALANCER),
    ("connectionPool", &CONNECTION_POOL),
    ("outlierDetection", &OUTLIER_DETECTION),
    ("tls", &CLIENT_TLS),
    ("portLevelSettings", &List(&PORT_TRAFFIC_POLICY)),
    (
        "tunnel",
        &Obj(&[
            ("protocol", &STR),
            ("targetHost", &STR),
            ("targetPort", &U32),
        ]),
    ),
    ("proxyProtocol", &Obj(&[("version", &Enum(&["V1", "V2"]))])),
    (
        "retryBudget",
        &Obj(&[("percent", &Num), ("minRetryConcurrency", &U32)]),
    ),
]);
static DR_SPEC: Shape = Obj(&[
    ("host", &STR),
    ("trafficPolicy", &TRAFFIC_POLICY),
    (
        "subsets",
        &List(&Obj(&[
            ("name", &STR),
            ("labels", &STR_MAP),
            ("trafficPolicy", &TRAFFIC_POLICY),
        ])),
    ),
    ("exportTo", &STRS),
    ("workloadSelector", &WORKLOAD_SELECTOR),
]);

/// A whole DestinationRule object.
pub static DESTINATION_RULE: Shape = Obj(&[
    ("apiVersion", &STR),
    ("kind", &STR),
    ("metadata", &METADATA),
    ("spec", &DR_SPEC),
    ("status", &ANY),
]);

// === Gateway (gateway.proto) ===

static TLS_VERSION: Shape = Enum(&["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]);
static SERVER_TLS: Shape = Obj(&[
    ("httpsRedirect", &Bool),
    (
        "mode",
        &Enum(&[
            "PASSTHROUGH",
            "SIMPLE",
            "MUTUAL",
            "AUTO_PASSTHROUGH",
            "ISTIO_MUTUAL",
            "OPTIONAL_MUTUAL",
        ]),
    ),
    ("serverCertificate", &STR),
    ("privateKey", &STR),
    ("caCertificates", &STR),
    ("caCrl", &STR),
    ("credentialName", &STR),
    ("credentialNames", &STRS),
    (
        "tlsCertificates",
        &List(&Obj(&[
            ("serverCertificate", &STR),
            ("privateKey", &STR),
            ("caCertificates", &STR),
        ])),
    ),
    ("subjectAltNames", &STRS),
    ("verifyCertificateSpki", &STRS),
    ("verifyCertificateHash", &STRS),
    ("minProtocolVersion", &TLS_VERSION),
    ("maxProtocolVersion", &TLS_VERSION),
    ("cipherSuites", &STRS),
]);
static SERVER: Shape = Obj(&[
    (
        "port",
        &Obj(&[
            ("number", &U32),
            ("protocol", &STR),
            ("name", &STR),
            ("targetPort", &U32),
        ]),
    ),
    ("bind", &STR),
    ("hosts", &STRS),
    ("tls", &SERVER_TLS),
    ("defaultEndpoint", &STR),
    ("name", &STR),
]);
static GW_SPEC: Shape = Obj(&[("servers", &List(&SERVER)), ("selector", &STR_MAP)]);

/// A whole Gateway object.
pub static GATEWAY: Shape = Obj(&[
    ("apiVersion", &STR),
    ("kind", &STR),
    ("metadata", &METADATA),
    ("spec", &GW_SPEC),
    ("status", &ANY),
]);

/// One field that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// RFC 6901 pointer of the field.
    pub pointer: String,
    /// An unknown field (else a wrong type).
    pub unknown: bool,
    pub message: String,
}

/// Every unknown field and wrong type in `value`, checked against `shape`. `null` is
/// accepted anywhere (Kubernetes treats it as the field being absent).
pub fn check(value: &Value, shape: &Shape) -> Vec<Mismatch> {
    let mut out = Vec::new();
    walk(value, shape, String::new(), &mut out);
    out
}

fn walk(v: &Value, shape: &Shape, ptr: String, out: &mut Vec<Mismatch>) {
    if v.is_null() {
        return;
    }
    let mut wrong = |want: &str| {
        out.push(Mismatch {
            pointer: ptr.clone(),
            unknown: false,
            message: format!("expected {want}, found {}", describe(v)),
        })
    };
    match shape {
        Any => {}
        Str if v.is_string() => {}
        Str => wrong("a string"),
        Bool if v.is_boolean() => {}
        Bool => wrong("true or false"),
        Enum(names) => {
            let ok = match v {
                Value::String(s) => names.contains(&s.as_str()),
                Value::Number(n) => n.as_u64().is_some_and(|n| n < names.len() as u64),
                _ => false,
            };
            if !ok {
                wrong(&format!("one of {}", names.join(", ")));
            }
        }
        Num if v.is_number() => {}
        Num => wrong("a number"),
        U32 => int(v, 0, i128::from(u32::MAX), &mut wrong),
        I32 => int(v, i128::from(i32::MIN), i128::from(i32::MAX), &mut wrong),
        I64 => int(v, i128::from(i64::MIN), i128::from(i64::MAX), &mut wrong),
        U64 => int(v, 0, i128::from(u64::MAX), &mut wrong),
        List(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(x, item, format!("{ptr}/{i}"), out);
                }
            }
            None => wrong("a list"),
        },
        MapOf(item) => match v.as_object() {
            Some(m) => {
                for (k, x) in m {
                    walk(x, item, format!("{ptr}/{}", escape(k)), out);
                }
            }
            None => wrong("a mapping"),
        },
        Obj(fields) => match v.as_object() {
            Some(m) => {
                for (k, x) in m {
                    let child = format!("{ptr}/{}", escape(k));
                    match fields.iter().find(|(name, _)| name == k) {
                        Some((_, s)) => walk(x, s, child, out),
                        None => out.push(Mismatch {
                            pointer: child,
                            unknown: true,
                            message: unknown(k, fields),
                        }),
                    }
                }
            }
            None => wrong("a mapping"),
        },
    }
}

fn int(v: &Value, min: i128, max: i128, wrong: &mut impl FnMut(&str)) {
    let n = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from));
    if !n.is_some_and(|n| (min..=max).contains(&n)) {
        wrong(&format!("an integer from {min} to {max}"));
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{} {s:?}", json_type(v)),
        Value::Number(n) => format!("{} ({n})", json_type(v)),
        _ => json_type(v).to_string(),
    }
}

fn escape(k: &str) -> String {
    super::manifest::escape_pointer(k)
}

/// "unknown field", with the closest known name when one is close enough.
fn unknown(key: &str, fields: &[(&str, &Shape)]) -> String {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let k = norm(key);
    let best = fields
        .iter()
        .map(|(name, _)| {
            let d = if norm(name) == k {
                0
            } else {
                strsim::damerau_levenshtein(&k, &norm(name))
            };
            (d, *name)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        // Close: at most a third of the name's letters differ (`timout`, `attemps`).
        Some((d, name)) if d <= 2.max(name.len() / 3) && d < name.len() => {
            format!("unknown field; did you mean `{name}`?")
        }
        _ => {
            let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
            format!("unknown field; known fields here: {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(spec: Value) -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "r", "namespace": "d", "annotations": {"a": "b"},
                            "resourceVersion": "7", "generation": 3, "uid": "u",
                            "creationTimestamp": "2026-01-01T00:00:00Z",
                            "managedFields": [{"manager": "kubectl"}]},
               "spec": spec, "status": {"conditions": []}})
    }

    #[test]
    fn kubectl_get_output_passes() {
        let v = vs(
            json!({"hosts": ["r"], "gateways": ["mesh"], "exportTo": ["."],
            "http": [{"name": "a", "match": [{"uri": {"prefix": "/"}, "headers": {"end-user": {"exact": "jason"}}}],
                      "route": [{"destination": {"host": "r", "subset": "v1", "port": {"number": 80}}, "weight": 100}],
                      "timeout": "2s", "retries": {"attempts": 3, "retryOn": "5xx"},
                      "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 5.5}}},
                      "corsPolicy": {"allowOrigins": [{"exact": "x"}]}}],
            "tcp": [{"match": [{"port": 1}], "route": [{"destination": {"host": "t"}}]}]}),
        );
        assert_eq!(check(&v, &VIRTUAL_SERVICE), vec![]);
    }

    #[test]
    fn unknown_fields_get_a_suggestion() {
        let v = vs(json!({"hosts": ["r"], "fooBar": 1,
            "http": [{"timout": "5s", "route": [{"destination": {"host": "r"}}],
                      "retries": {"attemps": 3, "per_try_timeout": "1s"},
                      "fault": {"abort": {"bogus": 1, "httpStatus": 503}}}]}));
        let got = check(&v, &VIRTUAL_SERVICE);
        let text: Vec<String> = got
            .iter()
            .map(|m| format!("{} {}", m.pointer, m.message))
            .collect();
        assert!(
            text.contains(
                &"/spec/http/0/timout unknown field; did you mean `timeout`?".to_string()
            ),
            "{text:#?}"
        );
        assert!(
            text.contains(
                &"/spec/http/0/retries/attemps unknown field; did you mean `attempts`?".to_string()
            ),
            "{text:#?}"
        );
        assert!(text.contains(&"/spec/http/0/retries/per_try_timeout unknown field; did you mean `perTryTimeout`?".to_string()), "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("/spec/fooBar unknown field; known fields here: hosts")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("/spec/http/0/fault/abort/bogus unknown field")),
            "{text:#?}"
        );
        assert_eq!(got.len(), 5, "{text:#?}");
    }

    #[test]
    fn wrong_types() {
        let mut v = vs(json!({"hosts": ["r"], "http": [{"route": [
            {"destination": {"host": "r", "port": {"number": "eighty"}}},
            {"destination": {"host": "r", "port": {"number": 99_999_999_999u64}}}]}]}));
        v["metadata"]["annotations"] = json!(["a"]);
        let got: Vec<String> = check(&v, &VIRTUAL_SERVICE)
            .iter()
            .map(|m| format!("{} {}", m.pointer, m.message))
            .collect();
        assert_eq!(
            got,
            [
                "/metadata/annotations expected a mapping, found a list",
                "/spec/http/0/route/0/destination/port/number expected an integer from 0 to 4294967295, found a string \"eighty\"",
                "/spec/http/0/route/1/destination/port/number expected an integer from 0 to 4294967295, found a number (99999999999)",
            ]
        );
    }
}
