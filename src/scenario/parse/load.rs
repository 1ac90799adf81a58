//! Loads (`spec.load`, floods, a search's flood) and the blast radius: every host load
//! goes to must be in `spec.targets`.

use std::time::Duration;

use serde_json::Value;

use super::values::{Obj, child};
use super::{Parser, R};
use crate::istio::manifest::json_type;
use crate::load::{MAX_CONNS, Target};
use crate::scenario::model::LoadSpec;

const DEFAULT_CONNECTIONS: u64 = 16;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl Parser<'_> {
    /// A load's keys of `o` (the caller checked that `o` has no others).
    pub(super) fn load(&self, o: &Obj<'_>, rate_required: bool) -> R<LoadSpec> {
        const URL_HINT: &str =
            "an http(s) URL such as \"http://{ingress}/\" or \"https://shop.example.com/\"";
        let (up, uv) = self.req(o, "url", URL_HINT)?;
        let url = self.string(&up, uv, URL_HINT)?;
        if let Some(host) = self.url_host(&up, url)? {
            self.check_blast(&up, &host)?;
        }
        let method = match o.get("method") {
            None => "GET".to_string(),
            Some((p, v)) => {
                let m = self.string(&p, v, "an HTTP method such as GET or POST")?;
                if http::Method::from_bytes(m.as_bytes()).is_err() {
                    return Err(self.err(
                        &p,
                        format!("invalid HTTP method {m:?}: a token such as GET, POST or PUT"),
                    ));
                }
                m.to_string()
            }
        };
        let headers = match o.get("headers") {
            None => Vec::new(),
            Some((p, v)) => self.headers(&p, v)?,
        };
        let body = match o.get("body") {
            None => None,
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((p, v)) => {
                return Err(self.err(
                    &p,
                    format!(
                        "expected the request body as a string, found {}",
                        json_type(v)
                    ),
                ));
            }
        };
        let rate = match o.get("rate") {
            Some((p, v)) => Some(self.rate(&p, v)?),
            None if rate_required => {
                return Err(self.err(
                    &o.at("rate"),
                    "rate is required: requests per second (a flood is an open-loop load)",
                ));
            }
            None => None,
        };
        let connections = self
            .opt_integer(o, "connections", 1, MAX_CONNS as u64)?
            .unwrap_or(DEFAULT_CONNECTIONS) as usize;
        let timeout = match o.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some((p, v)) => self.duration(&p, v)?.0,
        };
        let http2 = self.opt_bool(o, "http2")?.unwrap_or(false);
        Ok(LoadSpec {
            url: url.to_string(),
            method,
            headers,
            body,
            rate,
            ramp: None,
            connections,
            timeout,
            http2,
            at: self.at(&o.p),
        })
    }

    /// Checks a load URL; returns its host, or `None` for `{ingress}`.
    fn url_host(&self, p: &str, url: &str) -> R<Option<String>> {
        const FORM: &str =
            "{ingress} stands for the whole host:port of the URL, as in http://{ingress}/path";
        let bad = |why: String| {
            self.err(
                p,
                format!("invalid URL {url:?}: {why}; e.g. \"http://{{ingress}}/\" or \"https://shop.example.com/\""),
            )
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("not an absolute http:// or https:// URL".into()));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad(format!("scheme {scheme:?} is not http or https")));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains("{ingress}") || (authority != "{ingress}" && authority.contains('{')) {
            return Err(self.err(p, format!("invalid URL {url:?}: {FORM}")));
        }
        if authority == "{ingress}" {
            Target::parse(&format!("{scheme}://ingress.invalid{tail}"))
                .map_err(|e| bad(e.to_string()))?;
            return Ok(None);
        }
        let t = Target::parse(url).map_err(|e| bad(e.to_string()))?;
        Ok(Some(t.host))
    }

    fn headers(&self, p: &str, v: &Value) -> R<Vec<String>> {
        let Some(m) = v.as_object() else {
            return Err(self.err(
                p,
                format!(
                    "expected a mapping of header names to values such as {{Host: shop.example.com}}, found {}",
                    json_type(v)
                ),
            ));
        };
        let mut out = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in m {
            let hp = child(p, name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.err(
                    &hp,
                    format!(
                        "invalid header name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only"
                    ),
                ));
            }
            if let Some(first) = seen.iter().find(|s| s.eq_ignore_ascii_case(name)) {
                return Err(self.err(
                    &hp,
                    format!("header {name} is also given as {first} (header names are case-insensitive): give it once"),
                ));
            }
            seen.push(name);
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(self.err(
                        &hp,
                        format!(
                            "expected the header value as a string, found {}",
                            json_type(other)
                        ),
                    ));
                }
            };
            if http::HeaderValue::from_str(value.trim()).is_err() {
                return Err(self.err(
                    &hp,
                    format!("invalid header value {value:?}: visible ASCII text, no line breaks"),
                ));
            }
            if name.eq_ignore_ascii_case("host") {
                self.check_blast(&hp, strip_port(value.trim()))?;
            }
            out.push(format!("{name}: {}", value.trim()));
        }
        Ok(out)
    }

    fn check_blast(&self, p: &str, host: &str) -> R<()> {
        if host_allowed(host, &self.hosts) {
            return Ok(());
        }
        let list = if self.hosts.is_empty() {
            "none".to_string()
        } else {
            self.hosts.join(", ")
        };
        Err(self.err(
            p,
            format!("load to {host} is outside spec.targets ({list}): add it to spec.targets if this drill may send traffic there"),
        ))
    }
}

/// A `spec.targets` entry: a host name, an IP address, or `*.suffix`.
pub(super) fn is_host_pattern(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A Host header's host, without its port.
pub(super) fn strip_port(v: &str) -> &str {
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']').map_or(v, |(h, _)| h);
    }
    match v.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => v,
    }
}

/// Whether `host` matches an entry of `allowed`: exactly (case-insensitive), or a
/// subdomain of a `*.suffix` entry.
pub(super) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim_end_matches('.').to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => h
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => h == a,
        }
    })
}
