//! What each provider receives: the JSON body and the headers, from a notice and its count.
//! Pure.
//!
//! - `generic`: `{application, namespace, event, severity, revision, message, count,
//!   timestamp, reportingController}`; `Authorization: Bearer <token>` when the Secret has one.
//! - `generic-hmac`: the same body; `X-Signature: sha256=<hex HMAC-SHA256 of the body>` keyed
//!   with the Secret's `token`, as Flux's notification-controller signs.
//! - `slack`: an incoming-webhook message: `text`, and one attachment with a `color`
//!   (`good`/`danger`) and `fields`.
//! - `msteams`: an Office 365 connector MessageCard (`@type`, `@context`, `themeColor`,
//!   `summary`, `sections` with `facts`).

use ring::hmac;
use serde_json::{Value, json};

use super::Notice;
use crate::api::{NotifierProvider, Severity};

/// A request body and the headers beside `Content-Type: application/json`.
#[derive(Debug, PartialEq)]
pub struct Payload {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The payload of `notice` (standing for `count` identical ones) for `provider`; `None` for
/// commit status providers, which send no events. `token`: the Secret's.
pub fn build(
    provider: NotifierProvider,
    notice: &Notice,
    count: u32,
    token: Option<&str>,
) -> Option<Payload> {
    let value = match provider {
        NotifierProvider::Generic | NotifierProvider::GenericHmac => generic(notice, count),
        NotifierProvider::Slack => slack(notice, count),
        NotifierProvider::Msteams => msteams(notice, count),
        NotifierProvider::Github | NotifierProvider::Gitlab | NotifierProvider::Gitea => return None,
    };
    let body = serde_json::to_vec(&value).ok()?;
    let mut headers = Vec::new();
    match (provider, token) {
        (NotifierProvider::GenericHmac, Some(key)) => {
            headers.push(("x-signature", signature(key.as_bytes(), &body)))
        }
        (NotifierProvider::Generic, Some(token)) => {
            headers.push(("authorization", format!("Bearer {token}")))
        }
        _ => {}
    }
    Some(Payload { body, headers })
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn generic(notice: &Notice, count: u32) -> Value {
    json!({
        "application": notice.name,
        "namespace": notice.namespace,
        "event": notice.event.as_str(),
        "severity": severity(notice.severity),
        "revision": notice.revision,
        "message": notice.message,
        "count": count,
        "timestamp": notice.timestamp,
        "reportingController": "ferry",
    })
}

fn title(notice: &Notice, count: u32) -> String {
    let times = if count > 1 { format!(" ({count} times)") } else { String::new() };
    format!("{}/{}: {}{times}", notice.namespace, notice.name, notice.event.as_str())
}

fn slack(notice: &Notice, count: u32) -> Value {
    let color = if notice.severity == Severity::Error { "danger" } else { "good" };
    let mut fields = vec![json!({"title": "Event", "value": notice.event.as_str(), "short": true})];
    if let Some(revision) = &notice.revision {
        fields.push(json!({"title": "Revision", "value": revision, "short": true}));
    }
    if count > 1 {
        fields.push(json!({"title": "Count", "value": count.to_string(), "short": true}));
    }
    json!({
        "text": title(notice, count),
        "attachments": [{
            "color": color,
            "fallback": title(notice, count),
            "author_name": format!("Application {}/{}", notice.namespace, notice.name),
            "text": notice.message,
            "fields": fields,
            "footer": "ferry",
        }],
    })
}

fn msteams(notice: &Notice, count: u32) -> Value {
    let color = if notice.severity == Severity::Error { "FF0000" } else { "00C853" };
    let mut facts = vec![
        json!({"name": "Application", "value": format!("{}/{}", notice.namespace, notice.name)}),
        json!({"name": "Event", "value": notice.event.as_str()}),
        json!({"name": "Severity", "value": severity(notice.severity)}),
    ];
    if let Some(revision) = &notice.revision {
        facts.push(json!({"name": "Revision", "value": revision}));
    }
    if count > 1 {
        facts.push(json!({"name": "Count", "value": count.to_string()}));
    }
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": color,
        "summary": title(notice, count),
        "sections": [{
            "activityTitle": title(notice, count),
            "activitySubtitle": notice.message,
            "facts": facts,
        }],
    })
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NotificationEvent;

    fn notice(severity: Severity) -> Notice {
        Notice {
            namespace: "team".into(),
            name: "web".into(),
            labels: Default::default(),
            event: NotificationEvent::RolloutAborted,
            severity,
            revision: Some("main@sha1:0000000000000000000000000000000000000001".into()),
            message: "analysis failed".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn json_of(p: &Payload) -> Value {
        serde_json::from_slice(&p.body).unwrap()
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn generic_hmac_signs_the_exact_body_and_generic_sends_a_bearer_token() {
        let n = notice(Severity::Error);
        let p = build(NotifierProvider::GenericHmac, &n, 3, Some("key")).unwrap();
        assert_eq!(p.headers, vec![("x-signature", signature(b"key", &p.body))]);
        let v = json_of(&p);
        assert_eq!(v["application"], "web");
        assert_eq!(v["namespace"], "team");
        assert_eq!(v["event"], "rolloutAborted");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["count"], 3);
        assert_eq!(v["revision"], "main@sha1:0000000000000000000000000000000000000001");
        assert_eq!(v["timestamp"], "2026-01-01T00:00:00Z");
        let g = build(NotifierProvider::Generic, &n, 1, Some("t0k")).unwrap();
        assert_eq!(g.headers, vec![("authorization", "Bearer t0k".to_string())]);
        assert!(build(NotifierProvider::Generic, &n, 1, None).unwrap().headers.is_empty());
        assert!(build(NotifierProvider::Gitea, &n, 1, None).is_none());
    }

    #[test]
    fn slack_and_teams_get_their_documented_shapes() {
        let s = json_of(&build(NotifierProvider::Slack, &notice(Severity::Error), 2, None).unwrap());
        assert_eq!(s["text"], "team/web: rolloutAborted (2 times)");
        assert_eq!(s["attachments"][0]["color"], "danger");
        assert_eq!(s["attachments"][0]["text"], "analysis failed");
        assert_eq!(s["attachments"][0]["fields"][0]["title"], "Event");
        let ok = json_of(&build(NotifierProvider::Slack, &notice(Severity::Info), 1, None).unwrap());
        assert_eq!(ok["attachments"][0]["color"], "good");
        let t = json_of(&build(NotifierProvider::Msteams, &notice(Severity::Error), 1, Some("x")).unwrap());
        assert_eq!(t["@type"], "MessageCard");
        assert_eq!(t["@context"], "https://schema.org/extensions");
        assert_eq!(t["themeColor"], "FF0000");
        assert_eq!(t["summary"], "team/web: rolloutAborted");
        assert_eq!(t["sections"][0]["facts"][0]["name"], "Application");
        assert_eq!(t["sections"][0]["facts"][0]["value"], "team/web");
    }
}
