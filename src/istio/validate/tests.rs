//! Unit tests: each case is taken from Istio 1.26's own validation tests
//! (`pkg/config/validation/validation_test.go`; the Go test and case name in the
//! comment), plus meshdrill's file:line:field reporting.

use super::*;
use crate::istio::manifest::{Source, parse_str};

fn run(src: &str) -> Vec<Issue> {
    let docs = parse_str(src, Source("t.yaml".into())).expect("parse");
    validate(&docs[0]).expect("a networking.istio.io kind")
}

fn doc(kind: &str, spec: &str) -> String {
    let spec = spec
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: r, namespace: default}}\nspec:\n{spec}\n"
    )
}

/// An HTTP route on a VirtualService for host `r`.
fn route(yaml: &str) -> String {
    let body = yaml
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("- {l}")
            } else {
                format!("  {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    doc("VirtualService", &format!("hosts: [r]\nhttp:\n{body}"))
}

const DEST: &str = "route: [{destination: {host: r}}]";

#[track_caller]
fn valid(src: String) {
    let got = run(&src);
    assert!(got.is_empty(), "expected valid:\n{src}\ngot {got:#?}");
}

#[track_caller]
fn error(src: String, needle: &str) {
    let got = run(&src);
    assert!(
        got.iter()
            .any(|i| i.is_error() && i.to_string().contains(needle)),
        "expected an error with {needle:?}:\n{src}\ngot {got:#?}"
    );
}

/// Istio accepts it with a warning: no error, a warning containing `needle`.
#[track_caller]
fn warning(src: String, needle: &str) {
    let got = run(&src);
    assert!(
        !got.iter().any(Issue::is_error)
            && got
                .iter()
                .any(|i| !i.is_error() && i.to_string().contains(needle)),
        "expected only warnings, one with {needle:?}:\n{src}\ngot {got:#?}"
    );
}

// === VirtualService ===

#[test]
fn vs_good_route_passes() {
    valid(route(&format!(
        "{DEST}\nfault:\n  abort: {{httpStatus: 503, percentage: {{value: 50}}}}\n  delay: {{fixedDelay: 2s, percent: 10}}\nretries: {{attempts: 3, perTryTimeout: 2s, retryOn: '5xx,connect-failure,503'}}\ntimeout: 10s"
    )));
}

#[test]
fn vs_bad_values_name_line_field_and_rule() {
    let src = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    fault:\n      abort:\n        httpStatus: 601\n        percentage: {value: 101}\n    retries: {attempts: 0, retryOn: '5xx, reset'}\n    timeout: 1.5ms\n";
    let text: Vec<String> = run(src).iter().map(ToString::to_string).collect();
    let has = |p: &str| text.iter().any(|t| t.starts_with(p));
    assert!(
        has("t.yaml:11: spec.http[0].fault.abort.httpStatus: HTTP status 601"),
        "{text:#?}"
    );
    assert!(
        has("t.yaml:12: spec.http[0].fault.abort.percentage.value"),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("spec.http[0].retries.attempts: attempts is 0")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("retryOn") && t.contains("spaces")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("spec.http[0].timeout")),
        "{text:#?}"
    );
}

#[test]
fn vs_retries_and_timeouts() {
    // TestValidateHTTPRetry: "valid default", "invalid policy retryOn", "valid http
    // status retryOn", "invalid attempts" (attempts 0 with perTryTimeout).
    valid(route(&format!(
        "{DEST}\nretries: {{attempts: 0, retryOn: ''}}"
    )));
    valid(route(&format!(
        "{DEST}\nretries: {{attempts: 2, retryOn: ''}}"
    )));
    error(
        route(&format!("{DEST}\nretries: {{retryOn: 5xx}}")),
        "missing attempts means 0",
    );
    error(
        route(&format!(
            "{DEST}\nretries: {{attempts: 2, retryOn: '5xx,599'}}"
        )),
        "retryOn",
    );
    error(
        route(&format!("{DEST}\nretries: {{attempts: 2, backoff: 0.5ms}}")),
        "retries.backoff",
    );
    error(
        route(&format!("{DEST}\nretries: {{attempts: 3000000000}}")),
        "attempts is an integer",
    );
    // TestValidateHTTPRoute "simple" with a 0s timeout: ValidateDuration wants >= 1ms.
    error(
        route(&format!("{DEST}\ntimeout: 0s")),
        "spec.http[0].timeout",
    );
}

#[test]
fn vs_fault_injection() {
    // TestValidateHTTPFaultInjectionAbort "valid", "http2 error" (not supported),
    // "grpc: nil", "no error type" (a warning only: point 11 of issue 13).
    valid(route(&format!(
        "{DEST}\nfault: {{abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 1}}}}}}"
    )));
    error(
        route(&format!(
            "{DEST}\nfault: {{abort: {{http2Error: REFUSED_STREAM}}}}"
        )),
        "not supported",
    );
    error(
        route(&format!("{DEST}\nfault: {{abort: {{grpcStatus: NOPE}}}}")),
        "grpcStatus",
    );
    warning(
        route(&format!(
            "{DEST}\nfault: {{abort: {{percentage: {{value: 5}}}}}}"
        )),
        "error type not set",
    );
    error(
        route(&format!(
            "{DEST}\nfault: {{abort: {{httpStatus: 503, percent: 50}}}}"
        )),
        "abort has no `percent`",
    );
    error(
        route(&format!(
            "{DEST}\nfault: {{abort: {{httpStatus: '503', percentage: {{value: 5}}}}}}"
        )),
        "not a string",
    );
    // TestValidateHTTPFaultInjectionDelay "valid fixed", "invalid fixed" (< 1ms),
    // "valid exponential" (rejected: not supported yet), "invalid percent".
    valid(route(&format!(
        "{DEST}\nfault: {{delay: {{fixedDelay: 1s, percent: 50}}}}"
    )));
    error(
        route(&format!(
            "{DEST}\nfault: {{delay: {{fixedDelay: 0.0001s}}}}"
        )),
        "fixedDelay",
    );
    error(
        route(&format!(
            "{DEST}\nfault: {{delay: {{exponentialDelay: 1s}}}}"
        )),
        "exponentialDelay not supported",
    );
    error(
        route(&format!(
            "{DEST}\nfault: {{delay: {{fixedDelay: 1s, percentage: {{value: 0.00001}}}}}}"
        )),
        "percentage.value",
    );
    error(
        route(&format!("{DEST}\nfault: {{}}")),
        "must have an abort and/or a delay",
    );
}

#[test]
fn vs_http_status_600_is_istios_verdict() {
    // TestValidateHTTPStatus: 200 and 600 are valid, 199 and 601 are not (Istio 1.26
    // validateHTTPStatus allows <= 600). Envoy rejects 600: a warning for validate,
    // refused by the local mesh (blocks_envoy).
    let got = run(&route(&format!(
        "{DEST}\nfault: {{abort: {{httpStatus: 600, percentage: {{value: 1}}}}}}"
    )));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].severity, Severity::EnvoyRejects);
    assert!(!got[0].is_error() && got[0].blocks_envoy());
    valid(route(&format!(
        "{DEST}\nfault: {{abort: {{httpStatus: 200, percentage: {{value: 1}}}}}}"
    )));
    error(
        route(&format!("{DEST}\nfault: {{abort: {{httpStatus: 199}}}}")),
        "HTTP status 199 is not in range",
    );
    error(
        route(&format!("{DEST}\nfault: {{abort: {{httpStatus: 601}}}}")),
        "HTTP status 601 is not in range",
    );
}

#[test]
fn vs_fault_conflicts_with_redirect_and_direct_response() {
    // validateHTTPRouteConflict (virtualservice.go): point 11 of issue 13.
    error(
        route("redirect: {uri: /a}\nfault: {abort: {httpStatus: 503}}"),
        "both fault and redirect",
    );
    error(
        route("directResponse: {status: 503}\nfault: {delay: {fixedDelay: 1s}}"),
        "both fault and direct_response",
    );
    error(
        route("redirect: {uri: /a}\ndirectResponse: {status: 200}"),
        "both direct_response and redirect",
    );
    // TestValidateHTTPRoute "conflicting redirect and route", "simple redirect".
    error(
        route(&format!("{DEST}\nredirect: {{uri: /a}}")),
        "both route and redirect",
    );
    valid(route("redirect: {uri: /a, authority: b.com}"));
    error(
        route(&format!("{DEST}\ndirectResponse: {{status: 200}}")),
        "both route and direct_response",
    );
    error(
        route("rewrite: {uri: /a}\nredirect: {uri: /b}"),
        "both rewrite and redirect",
    );
    // TestValidateHTTPRoute "empty": route, redirect or direct_response is required.
    error(
        route("timeout: 1s"),
        "HTTP route, redirect or direct_response is required",
    );
}

#[test]
fn vs_redirect_direct_response_rewrite() {
    // TestValidateHTTPRedirect: "empty uri and authority", "invalid redirect code",
    // "invalid redirect scheme", "full redirect".
    error(
        route("redirect: {redirectCode: 301}"),
        "redirect must specify URI, authority, scheme, or port",
    );
    error(
        route("redirect: {uri: /a, redirectCode: 200}"),
        "not a valid redirect code",
    );
    error(
        route("redirect: {uri: /a, scheme: ftp}"),
        "invalid redirect scheme",
    );
    valid(route(
        "redirect: {uri: /a, authority: x.com, scheme: https, port: 8443, redirectCode: 308}",
    ));
    // TestValidateHTTPDirectResponse: "status 200", "status 100" (invalid), a body.
    valid(route(
        "directResponse: {status: 200, body: {string: hello}}",
    ));
    error(route("directResponse: {status: 100}"), "HTTP status 100");
    // TestValidateHTTPRewrite: "uri and uriRegexRewrite", "no uri or authority",
    // "uri only", "authority only"; TestValidateUriRegexRewrite "bad regex".
    error(
        route(&format!(
            "{DEST}\nrewrite: {{uri: /a, uriRegexRewrite: {{match: a, rewrite: b}}}}"
        )),
        "only contain one of URI or UriRegexRewrite",
    );
    error(
        route(&format!("{DEST}\nrewrite: {{}}")),
        "rewrite must specify at least one",
    );
    valid(route(&format!("{DEST}\nrewrite: {{uri: /a}}")));
    valid(route(&format!("{DEST}\nrewrite: {{authority: foo.bar}}")));
    error(
        route(&format!(
            "{DEST}\nrewrite: {{uriRegexRewrite: {{match: '[', rewrite: b}}}}"
        )),
        "invalid regex",
    );
    error(
        route(&format!(
            "{DEST}\nrewrite: {{uriRegexRewrite: {{match: a}}}}"
        )),
        "requires both Rewrite and Match",
    );
}

#[test]
fn vs_headers_and_matches() {
    // TestValidateHTTPRoute "valid headers", "empty header name - request add",
    // "empty header name - response remove", "envoy escaped % set", "envoy variable
    // set", "envoy unescaped % set", "empty prefix header match", "null header match".
    valid(route(&format!(
        "{DEST}\nheaders: {{request: {{add: {{x-a: b}}, set: {{x-b: '%HOSTNAME%'}}, remove: [x-c]}}, response: {{set: {{x-d: '100%%'}}}}}}"
    )));
    error(
        route(&format!("{DEST}\nheaders: {{request: {{add: {{'': b}}}}}}")),
        "header name cannot be empty",
    );
    error(
        route(&format!("{DEST}\nheaders: {{response: {{remove: ['']}}}}")),
        "header name cannot be empty",
    );
    error(
        route(&format!(
            "{DEST}\nheaders: {{request: {{set: {{x-a: 'abc%123'}}}}}}"
        )),
        "header value configuration",
    );
    error(
        route(&format!(
            "{DEST}\nheaders: {{request: {{set: {{':path': /x}}}}}}"
        )),
        "cannot have \":\" prefix",
    );
    error(
        route(&format!(
            "{DEST}\nheaders: {{response: {{set: {{Host: x}}}}}}"
        )),
        "cannot set Host header",
    );
    error(
        route(&format!(
            "{DEST}\nmatch: [{{headers: {{x-a: {{prefix: ''}}}}}}]"
        )),
        "prefix string match should not be empty",
    );
    error(
        route(&format!("{DEST}\nmatch: [{{headers: {{x-a: null}}}}]")),
        "cannot be null",
    );
    // uri allows an empty prefix (validateStringMatchRegexp), scheme does not.
    valid(route(&format!("{DEST}\nmatch: [{{uri: {{prefix: ''}}}}]")));
    error(
        route(&format!("{DEST}\nmatch: [{{scheme: {{prefix: ''}}}}]")),
        "\"scheme\": prefix string match",
    );
    error(
        route(&format!("{DEST}\nmatch: [{{uri: {{regex: '(['}}}}]")),
        "invalid regex",
    );
    error(
        route(&format!(
            "{DEST}\nmatch: [{{headers: {{'bad name': {{exact: a}}}}}}]"
        )),
        "not a valid header name",
    );
    // Pseudo-headers are valid match keys; withoutHeaders `regex: "*"` is "present".
    valid(route(&format!(
        "{DEST}\nmatch: [{{headers: {{':authority': {{exact: a}}}}, withoutHeaders: {{x-a: {{regex: '*'}}}}}}]"
    )));
    error(
        route(&format!("{DEST}\nmatch: [{{port: 70000}}]")),
        "port number 70000",
    );
    error(
        route(&format!("{DEST}\nmatch: [{{sourceNamespace: Bad_NS}}]")),
        "sourceNamespace match Bad_NS is invalid",
    );
    error(
        route(&format!("{DEST}\nmatch: [{{sourceLabels: {{'a b': c}}}}]")),
        "invalid tag key",
    );
    // TestValidateVirtualService "jwt claim route without gateway".
    error(
        route(&format!(
            "{DEST}\nmatch: [{{headers: {{'@request.auth.claims.foo': {{exact: a}}}}}}]"
        )),
        "JWT claim based routing",
    );
    // validateAuthorityRewrite.
    error(
        route(&format!(
            "{DEST}\nrewrite: {{authority: a}}\nheaders: {{request: {{set: {{':authority': b}}}}}}"
        )),
        "authority header cannot be set multiple times",
    );
}

#[test]
fn vs_mirror_cors_destinations() {
    // TestValidateHTTPRoute "invalid mirror percent", "invalid mirror percentage",
    // "negative mirror percentage", "mirrors without destination", "conflicting
    // mirror and mirrors", "valid mirror percentage".
    error(
        route(&format!("{DEST}\nmirrorPercent: 101")),
        "mirror_percent must have a max value of 100",
    );
    warning(
        route(&format!("{DEST}\nmirror: {{host: m}}\nmirrorPercent: 50")),
        "deprecated setting \"mirrorPercent\"",
    );
    error(
        route(&format!(
            "{DEST}\nmirror: {{host: m}}\nmirrorPercentage: {{value: 101}}"
        )),
        "mirror_percentage must have a max value of 100",
    );
    error(
        route(&format!(
            "{DEST}\nmirror: {{host: m}}\nmirrorPercentage: {{value: -1}}"
        )),
        "min value of 0",
    );
    error(
        route(&format!("{DEST}\nmirrors: [{{percentage: {{value: 5}}}}]")),
        "destination is required for mirrors",
    );
    error(
        route(&format!(
            "{DEST}\nmirror: {{host: a}}\nmirrors: [{{destination: {{host: b}}}}]"
        )),
        "both mirror and mirrors",
    );
    valid(route(&format!(
        "{DEST}\nmirror: {{host: m}}\nmirrorPercentage: {{value: 50.5}}"
    )));
    // TestValidateCORSPolicy: "bad method", "bad header name", "good", "bad max age".
    error(
        route(&format!(
            "{DEST}\ncorsPolicy: {{allowMethods: [GET, PUTT]}}"
        )),
        "\"PUTT\" is not a supported HTTP method",
    );
    error(
        route(&format!("{DEST}\ncorsPolicy: {{allowHeaders: ['a b']}}")),
        "not a valid header name",
    );
    valid(route(&format!(
        "{DEST}\ncorsPolicy: {{allowOrigins: [{{exact: x.com}}], allowMethods: [GET, POST], allowHeaders: ['*'], maxAge: 100s}}"
    )));
    error(
        route(&format!("{DEST}\ncorsPolicy: {{maxAge: 1.5s}}")),
        "seconds precision",
    );
    error(
        route(&format!(
            "{DEST}\ncorsPolicy: {{allowOrigins: [{{exact: ''}}]}}"
        )),
        "not a valid match type for CORS",
    );
    // TestValidateDestination: "empty", "wildcard host" (*), "bad subset", "bad port".
    error(
        route("route: [{destination: {host: '*'}}]"),
        "invalid destination host *",
    );
    error(
        route("route: [{destination: {host: r, subset: Bad_Subset}}]"),
        "subset name is invalid",
    );
    error(
        route("route: [{destination: {host: r, port: {number: 0}}}]"),
        "port number 0",
    );
    error(
        route("route: [{destination: {host: ''}}]"),
        "empty domain name",
    );
    // TestValidateRouteDestination "total weight = 0", "negative weight".
    error(
        route("route: [{destination: {host: a}, weight: 0}, {destination: {host: b}, weight: 0}]"),
        "total destination weight = 0",
    );
    error(
        route("route: [{destination: {host: a}, weight: -1}]"),
        "weight -1 < 0",
    );
    valid(route(
        "route: [{destination: {host: a}, weight: 900}, {destination: {host: b}, weight: 100}]",
    ));
}

#[test]
fn vs_hosts_gateways_delegates() {
    // TestValidateVirtualService: "duplicate hosts", "with no destination" (no
    // routes), "wildcard for mesh gateway", "wildcard for non-mesh gateway",
    // "invalid host", "valid delegate", "delegate with gateways", "delegate with
    // tcp", "root with delegate and route", "invalid gateway", "legacy gateway name".
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a.com, a.com]\nhttp: [{{{DEST}}}]"),
        ),
        "duplicate hosts",
    );
    error(
        doc(
            "VirtualService",
            &format!("hosts: ['*.foo.com', 'a.foo.com']\nhttp: [{{{DEST}}}]"),
        ),
        "duplicate hosts",
    );
    error(
        doc("VirtualService", "hosts: [a]"),
        "http, tcp or tls must be provided",
    );
    error(
        doc(
            "VirtualService",
            &format!("hosts: ['*']\nhttp: [{{{DEST}}}]"),
        ),
        "wildcard host * is not allowed",
    );
    valid(doc(
        "VirtualService",
        &format!("hosts: ['*']\ngateways: [ns/gw]\nhttp: [{{{DEST}}}]"),
    ));
    error(
        doc(
            "VirtualService",
            &format!("hosts: ['foo*.bar']\nhttp: [{{{DEST}}}]"),
        ),
        "invalid (label",
    );
    valid(doc(
        "VirtualService",
        &format!("hosts: [10.0.0.1]\nhttp: [{{{DEST}}}]"),
    ));
    valid(doc("VirtualService", &format!("http: [{{{DEST}}}]")));
    error(
        doc(
            "VirtualService",
            &format!("gateways: [ns/gw]\nhttp: [{{{DEST}}}]"),
        ),
        "delegate virtual service (no hosts) must have no gateways",
    );
    error(
        doc(
            "VirtualService",
            "tcp: [{route: [{destination: {host: a}}]}]",
        ),
        "must have no tcp route",
    );
    error(
        doc("VirtualService", "http: [{delegate: {name: a}}]"),
        "delegate HTTP route cannot contain delegate",
    );
    error(
        route("delegate: {name: d, namespace: ns1}\nroute: [{destination: {host: a}}]"),
        "root HTTP route (with a delegate) must not specify route",
    );
    valid(route("delegate: {name: d, namespace: ns1}"));
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a]\ngateways: [ns/Bad_GW]\nhttp: [{{{DEST}}}]"),
        ),
        "invalid value for gateway name",
    );
    warning(
        doc(
            "VirtualService",
            &format!("hosts: [a]\ngateways: [gw.ns]\nhttp: [{{{DEST}}}]"),
        ),
        "legacy gatewayName format",
    );
    // Test_validateExportTo: "duplicate", "public and private", "~ not allowed".
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a]\nexportTo: [ns1, ns1]\nhttp: [{{{DEST}}}]"),
        ),
        "duplicate entries in exportTo",
    );
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a]\nexportTo: ['*', ns1]\nhttp: [{{{DEST}}}]"),
        ),
        "both public (*) and non-public",
    );
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a]\nexportTo: ['~']\nhttp: [{{{DEST}}}]"),
        ),
        "exportTo ~ (none)",
    );
    error(
        doc(
            "VirtualService",
            &format!("hosts: [a]\nexportTo: [default, '.']\nhttp: [{{{DEST}}}]"),
        ),
        "current namespace default",
    );
}

#[test]
fn vs_tls_and_tcp_routes() {
    // TestValidateVirtualService "tls route without match", "sni host not in hosts",
    // "tcp route without route"; TestValidateTLSMatch "invalid subnet".
    let tls = |m: &str| {
        doc(
            "VirtualService",
            &format!(
                "hosts: ['*.foo.com']\ntls:\n- match: {m}\n  route: [{{destination: {{host: a}}}}]"
            ),
        )
    };
    valid(tls("[{sniHosts: [a.foo.com], port: 443}]"));
    error(
        tls("[]"),
        "TLS route must have at least one match condition",
    );
    error(tls("[{sniHosts: [a.bar.com]}]"), "not a compatible subset");
    error(
        tls("[{sniHosts: [a.foo.com], destinationSubnets: [10.0.0.0/33]}]"),
        "not a valid CIDR block",
    );
    error(tls("[{port: 443}]"), "at least one SNI host");
    error(
        doc("VirtualService", "hosts: [a]\ntcp: [{match: [{port: 1}]}]"),
        "TCP route is required",
    );
    valid(doc(
        "VirtualService",
        "hosts: [a]\ntcp: [{match: [{port: 27017, destinationSubnets: [10.1.0.0/16]}], route: [{destination: {host: m, port: {number: 27017}}}]}]",
    ));
}

#[test]
fn vs_unknown_fields_and_annotations() {
    // The CRD's structural schema: an unknown top-level key is rejected.
    let src = format!("{}\nfoo: bar\n", route(DEST));
    error(src, "foo: unknown field");
    // validateMetadata: constants.AlwaysReject; checkDryRunAnnotation.
    let rej = route(DEST).replace(
        "namespace: default}",
        "namespace: default, annotations: {internal.istio.io/webhook-always-reject: 'true'}}",
    );
    error(rej, "webhook-always-reject");
    let dry = route(DEST).replace(
        "namespace: default}",
        "namespace: default, annotations: {istio.io/dry-run: 'true'}}",
    );
    error(dry, "dry-run");
}

// === DestinationRule ===

fn dr(spec: &str) -> String {
    doc("DestinationRule", spec)
}

#[test]
fn dr_host_and_subsets() {
    // TestValidateDestinationRule: "simple destination rule", "missing destination
    // name", "missing subset name", "duplicate subset names", "simple destination rule
    // with empty selector labels" (a warning).
    valid(dr(
        "host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]",
    ));
    error(dr("subsets: [{name: v1}]"), "spec.host is required");
    error(
        dr("host: reviews\nsubsets: [{labels: {version: v1}}]"),
        "subset name cannot be empty",
    );
    error(
        dr("host: reviews\nsubsets: [{name: v1}, {name: v1}]"),
        "duplicate subset names: v1",
    );
    warning(
        dr("host: reviews\nworkloadSelector: {}"),
        "workload selector specified without labels",
    );
    error(
        dr("host: reviews\nsubsets: [{name: v1, labels: {'a b': c}}]"),
        "invalid tag key",
    );
    error(dr("host: 'foo*.bar'"), "invalid (label");
    // Test_validateExportTo: a DR with a workload selector only to its namespace.
    error(
        dr("host: reviews\nworkloadSelector: {matchLabels: {app: a}}\nexportTo: [other]"),
        "cannot have exportTo beyond current namespace",
    );
    error(
        dr("host: reviews\nworkloadSelector: {matchLabels: {app: '*'}}"),
        "wildcard is not supported in selector",
    );
}

#[test]
fn dr_traffic_policy() {
    // TestValidateDestinationRule "invalid traffic policy, top level" / "subset level";
    // TestValidateTrafficPolicy "invalid traffic policy, nil entries", "tunnel and
    // proxy protocol", "invalid tunnel protocol", "valid traffic policy".
    error(
        dr("host: reviews\ntrafficPolicy: {}"),
        "traffic policy must have at least one field",
    );
    error(
        dr("host: reviews\nsubsets: [{name: v1, trafficPolicy: {}}]"),
        "traffic policy must have at least one field",
    );
    error(
        dr(
            "host: reviews\ntrafficPolicy: {tunnel: {targetHost: a.com, targetPort: 80}, proxyProtocol: {version: V1}}",
        ),
        "tunnel and proxyProtocol must not be set together",
    );
    error(
        dr(
            "host: reviews\ntrafficPolicy: {tunnel: {protocol: GET, targetHost: a.com, targetPort: 80}}",
        ),
        "tunnel protocol must be",
    );
    error(
        dr("host: reviews\ntrafficPolicy: {tunnel: {targetHost: a.com, targetPort: 0}}"),
        "tunnel target port is invalid",
    );
    valid(dr(
        "host: reviews\ntrafficPolicy:\n  loadBalancer: {simple: ROUND_ROBIN}\n  connectionPool: {tcp: {maxConnections: 7, connectTimeout: 7s}, http: {http1MaxPendingRequests: 2, maxRetries: 0}}\n  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 50}",
    ));
    // retryBudget (Istio 1.27 API): percent 0-100 (CRD Minimum/Maximum).
    valid(dr(
        "host: reviews\ntrafficPolicy: {retryBudget: {percent: 25, minRetryConcurrency: 3}}",
    ));
    error(
        dr("host: reviews\ntrafficPolicy: {retryBudget: {percent: 120}}"),
        "must be from 0 to 100",
    );
}

#[test]
fn dr_connection_pool() {
    // TestValidateConnectionPool: "no settings", "invalid connection pool, negative
    // max connections", "invalid connect timeout", "invalid max pending requests",
    // "invalid max requests", "invalid max requests per connection", "invalid max
    // retries", "invalid http idle timeout", "h2 upgrade with client protocol",
    // "valid tcp idle timeout of 0s".
    let cp = |s: &str| {
        dr(&format!(
            "host: reviews\ntrafficPolicy: {{connectionPool: {s}}}"
        ))
    };
    error(cp("{}"), "connection pool must have at least one field");
    error(
        cp("{tcp: {maxConnections: -1}}"),
        "max connections must be non-negative",
    );
    error(cp("{tcp: {connectTimeout: 0.5ms}}"), "connectTimeout");
    error(
        cp("{http: {http1MaxPendingRequests: -1}}"),
        "http1 max pending requests",
    );
    error(cp("{http: {http2MaxRequests: -1}}"), "http2 max requests");
    error(
        cp("{http: {maxRequestsPerConnection: -1}}"),
        "max requests per connection",
    );
    error(
        cp("{http: {maxRetries: -1}}"),
        "max retries must be non-negative",
    );
    error(cp("{http: {idleTimeout: 0s}}"), "idleTimeout");
    error(
        cp("{http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}"),
        "use client protocol must not be true",
    );
    error(
        cp("{http: {h2UpgradePolicy: UPGRAD}}"),
        "expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE",
    );
    valid(cp(
        "{tcp: {idleTimeout: 0s, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}}}",
    ));
}

#[test]
fn dr_outlier_detection_and_load_balancer() {
    // TestValidateOutlierDetection: "valid outlier detection", "invalid outlier ejection
    // percent", "invalid min health percent", "invalid interval", "deprecated
    // consecutive errors" (warning), "consecutive local origin errors without split".
    let od = |s: &str| {
        dr(&format!(
            "host: reviews\ntrafficPolicy: {{outlierDetection: {s}}}"
        ))
    };
    valid(od(
        "{interval: 10s, baseEjectionTime: 10s, maxEjectionPercent: 50}",
    ));
    error(
        od("{maxEjectionPercent: 101}"),
        "percentage 101 is not in range 0..100",
    );
    error(
        od("{minHealthPercent: -1}"),
        "percentage -1 is not in range 0..100",
    );
    error(od("{interval: 0.5ms}"), "interval");
    warning(
        od("{consecutiveErrors: 5}"),
        "consecutive errors is deprecated",
    );
    error(
        od("{consecutiveLocalOriginFailures: 2}"),
        "split external local origin errors is set to false",
    );
    // TestValidateLoadBalancer: "valid load balancer with simple load balancing",
    // "invalid load balancer with consistentHash load balancing, missing ttl" (cookie
    // name), "maglev table size not prime", "minimum ring size deprecated" (warning).
    let lb = |s: &str| {
        dr(&format!(
            "host: reviews\ntrafficPolicy: {{loadBalancer: {s}}}"
        ))
    };
    valid(lb("{simple: LEAST_REQUEST}"));
    error(lb("{simple: FASTEST}"), "expected one of UNSPECIFIED");
    error(
        lb("{consistentHash: {httpCookie: {ttl: 10s}}}"),
        "name required for HttpCookie",
    );
    error(
        lb("{consistentHash: {httpHeaderName: x, maglev: {tableSize: 1000}}}"),
        "prime",
    );
    warning(
        lb("{consistentHash: {httpHeaderName: x, minimumRingSize: 1024}}"),
        "MinimumRingSize is deprecated",
    );
    error(
        lb(
            "{consistentHash: {httpHeaderName: x, minimumRingSize: 1024, ringHash: {minimumRingSize: 1}}}",
        ),
        "only one of MinimumRingSize",
    );
    valid(lb(
        "{consistentHash: {httpHeaderName: x, maglev: {tableSize: 65537}}}",
    ));
    error(
        lb("{warmup: {aggression: 0.5, duration: 10s}}"),
        "aggression should be greater than or equal to 1",
    );
}

#[test]
fn dr_locality_lb_setting() {
    // agent TestValidateLocalityLbSetting: "valid mesh config without LocalityLoadBalancerSetting",
    // "invalid LocalityLoadBalancerSetting_Distribute total weight > 100", "both
    // distribute and failover", "failover same region", "failover without outlier
    // detection" (warning).
    let l = |s: &str, od: &str| {
        dr(&format!(
            "host: reviews\ntrafficPolicy: {{loadBalancer: {{localityLbSetting: {s}}}{od}}}"
        ))
    };
    valid(l(
        "{distribute: [{from: 'us/*', to: {'us/a': 80, 'eu/*': 20}}]}",
        "",
    ));
    error(
        l(
            "{distribute: [{from: 'us/*', to: {'us/a': 80, 'eu/*': 30}}]}",
            "",
        ),
        "total locality weight 110 != 100",
    );
    error(
        l(
            "{distribute: [{from: a, to: {b: 100}}], failover: [{from: a, to: b}]}",
            "",
        ),
        "can not simultaneously specify 'distribute' and 'failover'",
    );
    error(
        l(
            "{failover: [{from: a, to: a}]}",
            ", outlierDetection: {interval: 1s}",
        ),
        "must specify different regions",
    );
    warning(
        l("{failover: [{from: a, to: b}]}", ""),
        "outlier detection policy must be provided for failover",
    );
    error(
        l(
            "{distribute: [{from: 'a/*', to: {b: 100}}, {from: 'a/z', to: {b: 100}}]}",
            "",
        ),
        "overlap with previous specified ones",
    );
}

#[test]
fn dr_client_tls_and_port_level_settings() {
    // TestValidateDestinationRule "InsecureSkipVerify is set true with tls mode simple,
    // and the ca cert is specified by CaCertificates" (invalid), "... mutual, and the ca
    // cert is not specified" (valid); agent TestValidateTLS "mutual without certs".
    let tls = |s: &str| dr(&format!("host: reviews\ntrafficPolicy: {{tls: {s}}}"));
    error(
        tls("{mode: SIMPLE, caCertificates: ca, insecureSkipVerify: true}"),
        "when InsecureSkipVerify is set true",
    );
    valid(tls(
        "{mode: MUTUAL, clientCertificate: c, privateKey: k, insecureSkipVerify: true}",
    ));
    error(
        tls("{mode: MUTUAL}"),
        "client certificate required for mutual tls",
    );
    error(
        tls("{mode: SIMPLE, credentialName: c, caCertificates: ca}"),
        "If credentialName is set",
    );
    valid(tls("{mode: ISTIO_MUTUAL}"));
    error(tls("{mode: STRICT}"), "expected one of DISABLE");
    // TestValidateTrafficPolicy "invalid traffic policy, missing port in port level
    // settings", "invalid traffic policy, bad connection pool in port level settings".
    let pls = |s: &str| {
        dr(&format!(
            "host: reviews\ntrafficPolicy: {{portLevelSettings: [{s}]}}"
        ))
    };
    error(
        pls("{loadBalancer: {simple: RANDOM}}"),
        "portTrafficPolicy must have valid port",
    );
    error(
        pls("{port: {number: 80}}"),
        "port traffic policy must have at least one field",
    );
    error(
        pls("{port: {number: 80}, connectionPool: {}}"),
        "connection pool must have at least one field",
    );
    valid(pls(
        "{port: {number: 80}, connectionPool: {http: {maxRetries: 3}}}",
    ));
}

// === Gateway ===

fn gw(servers: &str) -> String {
    doc(
        "Gateway",
        &format!("selector: {{istio: ingressgateway}}\nservers:\n{servers}"),
    )
}

#[test]
fn gateway_servers() {
    // TestValidateGateway: "happy domain", "happy multiple servers", "invalid port"
    // (duplicate port names), "invalid domain", "invalid partial wildcard", "valid
    // httpsRedirect", "invalid https httpsRedirect" (warning), "no servers".
    valid(gw(
        "- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['*.example.com', 'ns/foo.bar.com', '*']",
    ));
    error(
        gw(
            "- port: {number: 80, protocol: HTTP, name: http}\n  hosts: [a.com]\n- port: {number: 81, protocol: HTTP, name: http}\n  hosts: [b.com]",
        ),
        "port names in servers must be unique",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['foo.*.bar.com']"),
        "invalid",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['*bar.com']"),
        "partial wildcard",
    );
    valid(gw(
        "- port: {number: 80, protocol: HTTP, name: http}\n  hosts: [a.com]\n  tls: {httpsRedirect: true}",
    ));
    warning(
        gw(
            "- port: {number: 443, protocol: HTTPS, name: https}\n  hosts: [a.com]\n  tls: {httpsRedirect: true, mode: SIMPLE, credentialName: c}",
        ),
        "httpsRedirect should only be used with http servers",
    );
    error(
        doc("Gateway", "selector: {istio: ingressgateway}"),
        "gateway must have at least one server",
    );
    error(
        doc("Gateway", "servers: []").replace("name: r,", "name: my.gw,"),
        "invalid gateway name",
    );
    // TestValidateServer: "empty", "short name host" (invalid), "invalid namespace".
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}"),
        "server config must contain at least one host",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}\n  hosts: [reviews]"),
        "short names (non FQDN) are not allowed",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['Bad_NS/a.com']"),
        "invalid namespace value",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: http}\n  hosts: ['~/a.com']"),
        "invalid namespace value",
    );
}

#[test]
fn gateway_ports_and_tls() {
    // TestValidateServerPort: "invalid protocol", "invalid number", "name, no number",
    // "no port" (port is required).
    error(
        gw("- port: {number: 80, protocol: FOO, name: f}\n  hosts: [a.com]"),
        "invalid protocol \"FOO\"",
    );
    error(
        gw("- port: {number: 0, protocol: HTTP, name: h}\n  hosts: [a.com]"),
        "port number 0 must be in the range",
    );
    error(
        gw("- port: {number: 70000, protocol: HTTP, name: h}\n  hosts: [a.com]"),
        "port number 70000",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP}\n  hosts: [a.com]"),
        "port name must be set",
    );
    error(gw("- hosts: [a.com]"), "port is required");
    error(
        gw("- port: {number: 80, protocol: HTTP, name: h, targetPort: 8080}\n  hosts: [a.com]"),
        "targetPort has no impact",
    );
    // TestValidateServer: "https without tls", "tls on http port", "tls on tcp port",
    // bind IP.
    error(
        gw("- port: {number: 443, protocol: HTTPS, name: h}\n  hosts: [a.com]"),
        "server must have TLS settings for HTTPS/TLS protocols",
    );
    error(
        gw(
            "- port: {number: 80, protocol: HTTP, name: h}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, credentialName: c}",
        ),
        "plain text HTTP ports",
    );
    error(
        gw(
            "- port: {number: 9000, protocol: TCP, name: t}\n  hosts: [a.com]\n  tls: {mode: PASSTHROUGH}",
        ),
        "non HTTPS/TLS ports",
    );
    error(
        gw("- port: {number: 80, protocol: HTTP, name: h}\n  hosts: [a.com]\n  bind: not-an-ip"),
        "not a valid IP",
    );
    // TestValidateTlsOptions: "simple no certs", "mutual no ca", "istio_mutual with
    // certs", "passthrough with certs" (warning), "simple with credentialName",
    // "tls v1.0 without ciphers" (warning), "simple with crl".
    let tls = |t: &str| {
        gw(&format!(
            "- port: {{number: 443, protocol: HTTPS, name: h}}\n  hosts: [a.com]\n  tls: {t}"
        ))
    };
    error(
        tls("{mode: SIMPLE}"),
        "SIMPLE TLS requires a server certificate",
    );
    error(
        tls("{mode: MUTUAL, serverCertificate: c, privateKey: k}"),
        "MUTUAL TLS requires a client CA bundle",
    );
    error(
        tls("{mode: ISTIO_MUTUAL, serverCertificate: c}"),
        "ISTIO_MUTUAL TLS cannot have associated server certificate",
    );
    warning(
        tls("{mode: PASSTHROUGH, serverCertificate: c}"),
        "does not use certificates",
    );
    valid(tls("{mode: SIMPLE, credentialName: my-secret}"));
    warning(
        tls("{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_0}"),
        "TLS version below TLSV1_2",
    );
    error(
        tls("{mode: SIMPLE, serverCertificate: c, privateKey: k, caCrl: crl}"),
        "CRL is not supported with SIMPLE TLS",
    );
    error(tls("{mode: SIMPLES}"), "expected one of PASSTHROUGH");
}

// === reporting ===

#[test]
fn issues_carry_file_line_field_and_sort_by_line() {
    let src = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection:\n      maxEjectionPercent: 150\n    connectionPool:\n      tcp: {maxConnections: -1}\n";
    let text: Vec<String> = run(src).iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "t.yaml:8: spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 150 is not in range 0..100",
            "t.yaml:10: spec.trafficPolicy.connectionPool.tcp.maxConnections: invalid value -1: max connections must be non-negative",
        ]
    );
}

#[test]
fn other_kinds_are_not_ours() {
    let docs = parse_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        Source("s".into()),
    )
    .expect("parse");
    assert!(validate(&docs[0]).is_none());
}

#[test]
fn helpers_follow_istio() {
    use super::common::*;
    // agent TestValidateWildcardDomain, TestValidateFQDN.
    assert!(wildcard_domain("*.bar.com").is_ok());
    assert!(wildcard_domain("*").is_ok());
    assert!(wildcard_domain("foo.*.com").is_err());
    assert!(wildcard_domain("istio.io.").is_ok());
    assert!(wildcard_domain("foo.1").is_err());
    assert!(fqdn(&"a".repeat(256)).is_err());
    // host.Name Matches / SubsetOf.
    assert!(hosts_match("*.foo.com", "a.foo.com") && hosts_match("*.com", "*.foo.com"));
    assert!(!hosts_match("a.com", "b.com"));
    assert!(host_subset_of("a.foo.com", "*.foo.com") && !host_subset_of("*.foo.com", "a.foo.com"));
    // TestValidateHTTPHeaderValue.
    assert!(header_value("%HOSTNAME%").is_ok() && header_value("100%%").is_ok());
    assert!(header_value("abc%123").is_err() && header_value("%START_TIME%%").is_err());
    assert!(header_value("%REQ(x-a)%").is_ok());
    // TestValidateHTTPHeaderName / ValidateHTTPHeaderNameOrJwtClaimRoute.
    assert!(match_header_name("x-header").is_ok() && match_header_name(":path").is_ok());
    assert!(match_header_name(":foo").is_err() && match_header_name("").is_err());
    assert!(
        ip_subnet("10.0.0.0/8").is_ok()
            && ip_subnet("::1").is_ok()
            && ip_subnet("10.0.0/8").is_err()
    );
}
