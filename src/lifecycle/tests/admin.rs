//! Admin API answers over a real cache: pin targets and the audit trail's filters.

use super::fixture::{Fx, DAY};
use crate::admin::http::Request;
use crate::cache::{Event, EventKind};
use crate::lifecycle::OpError;
use std::collections::HashMap;

async fn get(
    fx: &Fx,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let req = Request {
        method: method.into(),
        path: format!("/api/v1{path}"),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        body: body.as_bytes().to_vec(),
    };
    let resp = crate::admin::api::handle(&fx.lc, req).await;
    let v = serde_json::from_slice(resp.body()).expect("JSON answer");
    (resp.status().as_u16(), v)
}

#[test]
fn pins_need_an_upstream_qualified_target_and_warn_when_they_match_nothing() {
    let fx = Fx::new("");
    let l = fx.blob(b"layer", fx.now - DAY);
    fx.image("local/library/nginx", &["latest"], &[&l], fx.now - DAY);

    for bad in ["nginx:latest", "nginx", "nginx@sha256:00", "**"] {
        let err = fx.lc.pin(bad, None).unwrap_err();
        assert!(matches!(err, OpError::BadRequest(_)), "{bad}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("<upstream>/<repository>:<tag>") && msg.contains("'/'"),
            "{msg}"
        );
    }
    assert!(fx.lc.pins().unwrap().is_empty(), "nothing stored");

    let p = fx.lc.pin("local/library/nginx:latest", None).unwrap();
    assert!(p.digest.is_some() && p.warning.is_none(), "{p:?}");
    let p = fx.lc.pin("local/library/*", None).unwrap();
    assert!(p.warning.is_none(), "{p:?}");
    let p = fx.lc.pin("docker.io/library/*", None).unwrap();
    let w = p.warning.unwrap_or_default();
    assert!(
        w.contains("no cached repository matches docker.io/library/*"),
        "{w}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pin_targets_are_400_json_errors_and_warnings_reach_the_answer() {
    let fx = Fx::new("");
    let (s, v) = get(&fx, "POST", "/pins", &[], r#"{"target":"nginx:latest"}"#).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("<upstream>/<repository>@<digest>"),
        "{v}"
    );
    let (s, v) = get(&fx, "POST", "/pins", &[], r#"{"target":"local/nothing/*"}"#).await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v["warning"]
            .as_str()
            .unwrap()
            .contains("no cached repository"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_limit_counts_only_events_of_the_repository_asked_for() {
    let fx = Fx::new("");
    let event = |upstream: &str, i: usize| {
        let mut e = Event::new(EventKind::Expire, format!("test {upstream} {i}"));
        e.upstream = Some(upstream.into());
        e.repository = Some("team/app".into());
        e
    };
    // Three of ours, then five newer ones of the same name on another upstream.
    let mut events: Vec<Event> = (0..3).map(|i| event("local", i)).collect();
    events.extend((0..5).map(|i| event("elsewhere", i)));
    fx.lc.record(&events);

    let (s, v) = get(
        &fx,
        "GET",
        "/events",
        &[("repository", "local/team/app"), ("limit", "2")],
        "",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let got: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["test local 2", "test local 1"], "{v}");
}
