//! The webhook message (`--notify URL`): when a drill ends, its verdict as one JSON
//! POST in the shape Slack and Mattermost incoming webhooks both accept — a short
//! `text` (verdict in words, scenario, target, exit code) and one message attachment
//! (`fallback`, `color`, `title`, `fields`) whose fields are the SLO table, one
//! `{title, value, short}` per objective. Both render attachments and fields (Slack as
//! "secondary attachments", Mattermost natively); neither rejects them. No `blocks`
//! (Mattermost does not read them) and no `props` (Slack has no such field).
//!
//! A post is bounded in time ([`TIMEOUT`]); its failure is the caller's to report —
//! it never changes a verdict.

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use super::{SloOutcome, ci_text, slo_outcome};
use crate::experiment::http::{HttpRequest, call};
use crate::scenario::journal::{DrillVerdict, Journal};

/// The longest a post may take, connection and answer included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Fields in the message at most (the rest are counted in the last one): chat
/// clients show long attachments collapsed, and Slack caps a message's size.
pub const MAX_FIELDS: usize = 40;

/// Why a webhook URL is refused, or a post failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{url:?} is not a webhook URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{0}")]
    Http(#[from] crate::experiment::http::HttpError),
    #[error("no answer within {secs}s")]
    Timeout { secs: f64 },
    #[error("cannot post: {0}")]
    Runtime(String),
    #[error("HTTP {status}{}", if .first_line.is_empty() { String::new() } else { format!(": {}", .first_line) })]
    Status { status: u64, first_line: String },
}

/// An http or https URL with a host (checked before the drill).
pub fn parse_url(s: &str) -> Result<Url, NotifyError> {
    let bad = |reason: String| NotifyError::BadUrl {
        url: s.to_string(),
        reason,
    };
    let url =
        Url::parse(s).map_err(|e| bad(format!("{e}; write http://HOST/PATH or https://…")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme is {:?}; webhooks are http:// or https://",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("there is no host".into()));
    }
    Ok(url)
}

fn mark(o: SloOutcome) -> &'static str {
    match o {
        SloOutcome::NotJudged => "not judged",
        SloOutcome::Met => "ok",
        SloOutcome::BreachedAsExpected => "breached, as expected",
        SloOutcome::DidNotBreach => "DID NOT BREACH",
        SloOutcome::Violated => "FAIL",
        SloOutcome::Inconclusive => "inconclusive",
    }
}

/// Slack's escaping for message text (its documented rule: exactly `&`, `<`, `>`, as
/// entities), so that `p99 < 500ms … >= 99%` is not read as a `<link>`; Mattermost
/// renders the entities as the characters too (and would read `<…>` as Slack links).
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message for the drill in `j`.
pub fn payload(j: &Journal) -> Value {
    let plain = format!(
        "meshdrill: {} {} on {}: {} (exit {})",
        j.scenario,
        super::verdict_word(j.verdict),
        j.target,
        j.verdict_text,
        j.exit_code
    );
    let text = escaped(&plain);
    let mut fields: Vec<Value> = Vec::new();
    let rows = j.phases.iter().flat_map(|p| {
        let flood = p
            .flood
            .iter()
            .flat_map(|f| f.slos.iter().map(|r| (r, "hold")));
        p.slos
            .iter()
            .map(|r| (r, p.expect.as_str()))
            .chain(flood)
            .map(move |(r, e)| (p.name.as_str(), r, e))
    });
    let recovery = j.recovery.iter().map(|r| ("recovery", r, "hold"));
    let all: Vec<_> = rows.chain(recovery).collect();
    for (i, (phase, r, expect)) in all.iter().enumerate() {
        if i + 1 == MAX_FIELDS && all.len() > MAX_FIELDS {
            fields.push(json!({
                "title": "…",
                "value": format!("{} more objectives: see the journal", all.len() - i),
                "short": false,
            }));
            break;
        }
        let ci = ci_text(r).map(|c| format!(" (CI {c})")).unwrap_or_default();
        let needed = r
            .needed
            .map(|n| format!("; about {n} requests would decide"))
            .unwrap_or_default();
        fields.push(json!({
            "title": escaped(&format!("{phase}: {}", r.objective)),
            "value": escaped(&format!("{}{ci} {}{needed}", r.measured_text, mark(slo_outcome(r, expect)))),
            "short": true,
        }));
    }
    let color = match j.verdict {
        DrillVerdict::Held => "#2eb886",
        DrillVerdict::Broke => "#d40e0d",
        DrillVerdict::Inconclusive | DrillVerdict::NotJudged => "#daa038",
    };
    let mut message = json!({ "text": text });
    if !fields.is_empty() {
        message["attachments"] = json!([{
            // Plain text, for notifications.
            "fallback": plain,
            "color": color,
            "title": format!("objectives ({}% confidence)", j.confidence * 100.0),
            "fields": fields,
        }]);
    }
    message
}

/// POSTs `body` as JSON to `url`, within [`TIMEOUT`]; a non-2xx answer is an error
/// carrying the first line of its body.
pub async fn post(url: &Url, body: &Value) -> Result<(), NotifyError> {
    post_within(url, body, TIMEOUT).await
}

/// [`post`] within `limit`.
pub async fn post_within(url: &Url, body: &Value, limit: Duration) -> Result<(), NotifyError> {
    let req = HttpRequest {
        url: url.to_string(),
        method: "POST".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        arguments: Some(body.clone()),
        connect_timeout: limit,
        read_timeout: limit,
        verify_tls: true,
    };
    let answer = tokio::time::timeout(limit, call(&req))
        .await
        .map_err(|_| NotifyError::Timeout {
            secs: limit.as_secs_f64(),
        })??;
    let status = answer["status"].as_u64().unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = match &answer["body"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let first_line: String = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect();
    Err(NotifyError::Status { status, first_line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::journal;

    #[test]
    fn text_names_verdict_scenario_target_and_exit_code() {
        let p = payload(&journal());
        assert_eq!(
            p["text"],
            "meshdrill: network-failure BROKE on mesh go-demo-8: broke at step 1 (hold 5s): availability 51.40% &lt; 99% (exit 1)"
        );
        assert_eq!(
            p["attachments"][0]["fallback"],
            "meshdrill: network-failure BROKE on mesh go-demo-8: broke at step 1 (hold 5s): availability 51.40% < 99% (exit 1)"
        );
    }

    #[test]
    fn the_slo_table_is_the_attachment_fields() {
        let p = payload(&journal());
        let a = &p["attachments"][0];
        assert_eq!(a["color"], "#d40e0d");
        let fields = a["fields"].as_array().expect("fields");
        // 2 objectives in each of 4 phases (the ignored pause has none) + recovery.
        assert_eq!(fields.len(), 9);
        assert_eq!(
            fields[2]["title"],
            "step 1: hold 5s (50% abort): availability &gt;= 99%"
        );
        assert_eq!(fields[2]["value"], "51.40% (CI 45.61%–54.39%) FAIL");
        assert_eq!(
            fields[4]["value"],
            "51.40% (CI 45.61%–54.39%) breached, as expected"
        );
        assert!(
            fields[6]["value"]
                .as_str()
                .is_some_and(|v| v.ends_with("inconclusive; about 1800 requests would decide"))
        );
        // Only keys both Slack and Mattermost read.
        let keys: Vec<&String> = p.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["text", "attachments"]);
    }

    #[test]
    fn a_long_table_is_cut_and_says_how_much_is_left_out() {
        let mut j = journal();
        let p = j.phases[0].clone();
        j.phases = vec![p; 30];
        let v = payload(&j);
        let fields = v["attachments"][0]["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), MAX_FIELDS);
        assert_eq!(
            fields[MAX_FIELDS - 1]["value"],
            "22 more objectives: see the journal"
        );
    }

    #[tokio::test]
    async fn a_webhook_that_never_answers_is_given_up_on() {
        // Accepts the connection, reads nothing, answers nothing.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url =
            parse_url(&format!("http://{}/hook", l.local_addr().expect("addr"))).expect("a URL");
        let hold = tokio::spawn(async move { l.accept().await.map(|(s, _)| s) });
        let r = post_within(&url, &json!({"text": "t"}), Duration::from_millis(300)).await;
        assert!(
            matches!(
                r,
                Err(NotifyError::Timeout { .. }
                    | NotifyError::Http(crate::experiment::http::HttpError::ReadTimeout { .. }))
            ),
            "{r:?}"
        );
        hold.abort();
    }

    #[test]
    fn only_http_and_https_urls_with_a_host() {
        assert!(parse_url("https://hooks.slack.com/services/T/B/X").is_ok());
        assert!(parse_url("http://127.0.0.1:8065/hooks/abc").is_ok());
        for bad in ["ftp://h/x", "hooks.slack.com/x", "http://", "file:///tmp/x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
