//! Prometheus' JSON answers (`/api/v1/query`, `/api/v1/query_range`) → the one series
//! an objective judges, or why there is none. Pure: bytes in, values out.
//!
//! The API's envelope: `{"status": "success", "data": {"resultType": …, "result": …}}`
//! or `{"status": "error", "errorType": "bad_data", "error": "…"}`. Sample values are
//! strings (`"1.5"`, `"NaN"`, `"+Inf"`), timestamps numbers of seconds.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Why an answer gives no usable value. The query's fault (the caller reports it as
/// an input error) except [`Shape::Malformed`], which is the server's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Shape {
    /// The query matched no series (or the scalar had no point).
    #[error(
        "the query returned nothing; a counter Envoy has not created yet is absent until it counts: append `or vector(0)`, or check the metric name"
    )]
    Empty,
    /// More than one series: the objective cannot tell which to judge.
    #[error("the query returned {count} series ({labels}); aggregate it (sum, max) to one")]
    Several { count: usize, labels: String },
    /// A result type an objective cannot judge (a range vector from an instant query,
    /// a string).
    #[error("the query returned a {0}, not one number; {hint}", hint = type_hint(.0))]
    Type(String),
    /// Prometheus answered `status: error` (a syntax error: `bad_data`).
    #[error("Prometheus refused the query ({kind}): {message}")]
    Refused { kind: String, message: String },
    /// Not the API's JSON.
    #[error("the answer is not Prometheus API JSON: {0}")]
    Malformed(String),
}

fn type_hint(t: &str) -> &'static str {
    match t {
        "matrix" => "a range selector such as x[1m] needs a function over it, e.g. rate(x[1m])",
        _ => "give an expression whose value is a number, e.g. sum(rate(x[10s]))",
    }
}

impl Shape {
    /// Whether the query (the user's input) is at fault rather than the server.
    pub fn is_input(&self) -> bool {
        !matches!(self, Shape::Malformed(_))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// A sample value: `"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"` (Rust's parser reads them
/// all, case-insensitively).
fn sample(s: &str) -> Result<f64, Shape> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| Shape::Malformed(format!("the sample value {s:?} is not a number")))
}

fn envelope(body: &[u8]) -> Result<Data, Shape> {
    let e: Envelope = serde_json::from_slice(body).map_err(|e| Shape::Malformed(e.to_string()))?;
    if e.status != "success" {
        return Err(Shape::Refused {
            kind: e.error_type.unwrap_or_else(|| e.status.clone()),
            message: e.error.unwrap_or_default(),
        });
    }
    e.data
        .ok_or_else(|| Shape::Malformed("status success without data".into()))
}

/// `{a="1", b="2"}` for up to 3 series, then `…`.
fn labels(series: &[Series]) -> String {
    let one = |s: &Series| {
        let inner: Vec<String> = s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    let mut out: Vec<String> = series.iter().take(3).map(one).collect();
    if series.len() > 3 {
        out.push("…".into());
    }
    out.join(", ")
}

fn one_series(result: Value) -> Result<Series, Shape> {
    let mut series: Vec<Series> =
        serde_json::from_value(result).map_err(|e| Shape::Malformed(e.to_string()))?;
    match series.len() {
        0 => Err(Shape::Empty),
        1 => Ok(series.remove(0)),
        count => Err(Shape::Several {
            count,
            labels: labels(&series),
        }),
    }
}

/// An instant query's answer (`/api/v1/query`): its one value. A vector of one
/// series or a scalar; NaN and ±∞ are values here (the caller decides).
pub fn instant(body: &[u8]) -> Result<f64, Shape> {
    let d = envelope(body)?;
    match d.result_type.as_str() {
        "vector" => {
            let s = one_series(d.result)?;
            let (_, v) = s
                .value
                .ok_or_else(|| Shape::Malformed("a vector sample without value".into()))?;
            sample(&v)
        }
        "scalar" => {
            let (_, v): (f64, String) =
                serde_json::from_value(d.result).map_err(|e| Shape::Malformed(e.to_string()))?;
            sample(&v)
        }
        other => Err(Shape::Type(other.to_string())),
    }
}

/// A range query's answer (`/api/v1/query_range`): the points of its one series,
/// `(unix seconds, value)` in time order. A range query always answers a matrix.
pub fn range(body: &[u8]) -> Result<Vec<(f64, f64)>, Shape> {
    let d = envelope(body)?;
    if d.result_type != "matrix" {
        return Err(Shape::Type(d.result_type));
    }
    let s = one_series(d.result)?;
    let mut out = Vec::with_capacity(s.values.len());
    for (t, v) in &s.values {
        out.push((*t, sample(v)?));
    }
    if out.is_empty() {
        return Err(Shape::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(n: usize, value: &str) -> String {
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(r#"{{"metric":{{"envoy_cluster_name":"c{i}"}},"value":[1700000000.5,"{value}"]}}"#)
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            items.join(",")
        )
    }

    #[test]
    fn one_series_or_a_scalar_gives_its_value() {
        assert_eq!(instant(vector(1, "0.25").as_bytes()), Ok(0.25));
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
        assert_eq!(instant(scalar.as_bytes()), Ok(3.0));
    }

    #[test]
    fn nan_and_infinities_are_read_as_values() {
        assert!(instant(vector(1, "NaN").as_bytes()).is_ok_and(f64::is_nan));
        assert_eq!(instant(vector(1, "+Inf").as_bytes()), Ok(f64::INFINITY));
        assert_eq!(instant(vector(1, "-Inf").as_bytes()), Ok(f64::NEG_INFINITY));
        assert!(matches!(
            instant(vector(1, "many").as_bytes()),
            Err(Shape::Malformed(_))
        ));
    }

    #[test]
    fn nothing_or_several_series_say_what_to_do() {
        let e = instant(vector(0, "1").as_bytes()).expect_err("empty");
        assert_eq!(e, Shape::Empty);
        assert!(e.to_string().contains("or vector(0)"), "{e}");
        let e = instant(vector(5, "1").as_bytes()).expect_err("several");
        let text = e.to_string();
        assert!(text.starts_with("the query returned 5 series ("), "{text}");
        assert!(text.contains(r#"{envoy_cluster_name="c0"}"#), "{text}");
        assert!(text.contains('…'), "{text}");
        assert!(text.ends_with("aggregate it (sum, max) to one"), "{text}");
        assert!(e.is_input());
    }

    #[test]
    fn a_matrix_or_a_string_from_an_instant_query_is_refused() {
        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        let e = instant(m.as_bytes()).expect_err("matrix");
        assert_eq!(e, Shape::Type("matrix".into()));
        assert!(e.to_string().contains("rate(x[1m])"), "{e}");
        let s = r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
        assert_eq!(instant(s.as_bytes()), Err(Shape::Type("string".into())));
    }

    #[test]
    fn a_range_gives_the_points_of_its_one_series() {
        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[10,"0"],[11,"2.5"],[12,"NaN"]]}]}}"#;
        let pts = range(m.as_bytes()).expect("points");
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[1], (11.0, 2.5));
        assert!(pts[2].1.is_nan());
        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(range(empty.as_bytes()), Err(Shape::Empty));
        let two = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"]]},{"metric":{"a":"2"},"values":[[1,"1"]]}]}}"#;
        assert!(matches!(
            range(two.as_bytes()),
            Err(Shape::Several { count: 2, .. })
        ));
        // A range query never answers a vector.
        assert_eq!(
            range(vector(1, "1").as_bytes()),
            Err(Shape::Type("vector".into()))
        );
    }

    #[test]
    fn error_bodies_and_garbage_are_told_apart() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \")\""}"#;
        let e = instant(bad.as_bytes()).expect_err("refused");
        assert!(matches!(&e, Shape::Refused { kind, .. } if kind == "bad_data"));
        assert!(e.to_string().contains("parse error"), "{e}");
        assert!(e.is_input());
        let e = instant(b"<html>502 Bad Gateway</html>").expect_err("html");
        assert!(matches!(e, Shape::Malformed(_)));
        assert!(!e.is_input());
        let no_data = r#"{"status":"success"}"#;
        assert!(matches!(
            instant(no_data.as_bytes()),
            Err(Shape::Malformed(_))
        ));
    }
}
