//! API keys on `notifyd`: made, used, listed without their secret, revoked (401 at once), and
//! never written to the log.

use notify_tests::Notifyd;
use serde_json::json;

#[tokio::test]
async fn a_key_is_made_used_listed_and_revoked_and_never_logged() {
    let d = Notifyd::start_process(&[("RUST_LOG", "debug")]).await;
    let made = d.post("/v1/api-keys", json!({"name": "ci"})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let secret = made.body["secret"].as_str().unwrap().to_owned();
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(made.body["prefix"].as_str().unwrap()));

    let client = reqwest::Client::new();
    let with = |key: &str| client.get(d.url("/v1/users/nobody")).bearer_auth(key);
    assert_eq!(
        d.send(with(&secret)).await.status,
        404,
        "the new key is let in"
    );
    assert_eq!(d.send(with("nk_not-a-key")).await.status, 401);

    let listed = d.get("/v1/api-keys").await;
    assert_eq!(listed.status, 200);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "the first key is configuration, not listed");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["name"], "ci");
    assert!(items[0].get("secret").is_none(), "{}", listed.text);
    assert!(items[0]["last_used_at"].is_string(), "its use was recorded");
    assert!(!listed.text.contains(&secret));

    assert_eq!(d.delete(&format!("/v1/api-keys/{id}")).await.status, 204);
    assert_eq!(d.send(with(&secret)).await.status, 401, "revoked at once");
    assert_eq!(d.delete(&format!("/v1/api-keys/{id}")).await.status, 404);
    assert_eq!(
        d.delete("/v1/api-keys/not-an-id").await.fields(),
        ["key_id"]
    );
    assert_eq!(
        d.get("/v1/api-keys").await.status,
        200,
        "the first key still works"
    );

    let log = d.log();
    assert!(
        log.contains("API key revoked"),
        "the log was written:\n{log}"
    );
    assert!(!log.contains(&secret), "a key's secret is in the log");
    assert!(!log.contains(&d.key), "the first key is in the log");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_others_go_on() {
    let d = Notifyd::start(&[("NOTIFY_API_KEY_RPS", "2")]).await;
    let other = d.post("/v1/api-keys", json!({"name": "other"})).await;
    assert_eq!(other.status, 201, "{}", other.text);
    let other = other.body["secret"].as_str().unwrap().to_owned();
    let mut limited = None;
    for _ in 0..6 {
        let a = d.get("/v1/users/nobody").await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 404);
    }
    let a = limited.expect("six requests at once are over 2 a second");
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let wait: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let client = reqwest::Client::new();
    let as_other = client.get(d.url("/v1/users/nobody")).bearer_auth(&other);
    assert_eq!(
        d.send(as_other).await.status,
        404,
        "another key is not slowed"
    );
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(d.get("/v1/users/nobody").await.status, 404, "allowed again");
}
