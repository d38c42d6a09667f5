//! API keys on the api function: no AWS call at init (the first key's secret is read at the
//! first request that needs it, once), and a key revoked in one execution environment stops in
//! another within the cache's time to live.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use notify_aws::secret::SecretValue;
use notify_aws::wiring;
use notify_core::ports::StaticKey;
use notify_tests::aws::{AwsWorld, WorldOptions, api_event};

async fn call(
    router: &axum::Router,
    key: &str,
    event: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut event = event;
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    let mut handler = notify_tests::aws::ApiHandler::from_router(router.clone());
    let a = handler.call(event).await;
    (a.status, a.body)
}

#[tokio::test]
async fn the_first_key_is_read_at_the_first_request_not_at_init() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        ..WorldOptions::default()
    })
    .await;
    let arn = w.first_key_secret("nk_from_the_secret").await;
    let proxy = w.proxy.as_ref().unwrap();
    let reads = || async {
        proxy.report().await["calls"]["secretsmanager.GetSecretValue"]
            .as_u64()
            .unwrap_or(0)
    };
    let first = Arc::new(SecretValue::new(
        aws_sdk_secretsmanager::Client::new(&w.sdk),
        arn,
    ));
    let router = wiring::api(&w.config, &w.sdk, first).unwrap();
    assert_eq!(reads().await, 0, "init read the secret");
    let get = api_event("api-get-user.json", Some("/v1/users/nobody"), None);
    assert_eq!(
        call(&router, "nk_from_the_secret", get.clone()).await.0,
        404
    );
    assert_eq!(call(&router, "nk_wrong", get.clone()).await.0, 401);
    assert_eq!(call(&router, "nk_from_the_secret", get).await.0, 404);
    assert_eq!(reads().await, 1, "read once, then kept");
}

#[tokio::test]
async fn a_key_revoked_in_one_environment_stops_in_another_within_the_ttl() {
    let mut w = AwsWorld::start().await;
    w.config.api_key_cache_secs = 1;
    let first = || Arc::new(StaticKey("nk_first".into()));
    let a = wiring::api(&w.config, &w.sdk, first()).unwrap();
    let b = wiring::api(&w.config, &w.sdk, first()).unwrap();
    let make = api_event(
        "api-post-notification-now.json",
        Some("/v1/api-keys"),
        Some(json!({"name": "ci"})),
    );
    let (status, made) = call(&a, "nk_first", make).await;
    assert_eq!(status, 201, "{made:?}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    let get = api_event("api-get-user.json", Some("/v1/users/nobody"), None);
    assert_eq!(
        call(&b, &secret, get.clone()).await.0,
        404,
        "b lets the new key in"
    );

    let revoke = api_event(
        "api-delete-user.json",
        Some(&format!("/v1/api-keys/{id}")),
        None,
    );
    assert_eq!(call(&a, "nk_first", revoke).await.0, 204);
    assert_eq!(
        call(&a, &secret, get.clone()).await.0,
        401,
        "at once where revoked"
    );
    assert_eq!(
        call(&b, &secret, get.clone()).await.0,
        404,
        "b still trusts its cache"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(&b, &secret, get).await.0, 401, "b within the ttl");
}

#[tokio::test]
async fn user_tokens_and_unsubscribe_links_each_have_their_own_key_read_once() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        ..WorldOptions::default()
    })
    .await;
    let proxy = w.proxy.as_ref().unwrap();
    let router = wiring::api(&w.config, &w.sdk, Arc::new(StaticKey("nk_first".into()))).unwrap();
    let put = api_event(
        "api-put-user.json",
        Some("/v1/users/ada"),
        Some(json!({"email": "ada@example.org"})),
    );
    assert_eq!(call(&router, "nk_first", put).await.0, 200);
    let token = api_event(
        "api-post-notification-now.json",
        Some("/v1/users/ada/tokens"),
        Some(json!({})),
    );
    let (status, body) = call(&router, "nk_first", token).await;
    assert_eq!(status, 201, "{body}");
    let send = api_event(
        "api-post-notification-now.json",
        Some("/v1/notifications"),
        Some(json!({"to": {"user_id": "ada"}, "category": "news",
                    "content": {"subject": "s", "text": "Leave: {{ unsubscribe_url }}"}})),
    );
    let (status, accepted) = call(&router, "nk_first", send).await;
    assert_eq!(status, 202, "{accepted}");
    // Its email carries a one-click unsubscribe link, signed with the other key.
    let message = api_event(
        "api-get-user.json",
        Some(&format!(
            "/v1/notifications/{}/deliveries/ada/email/message",
            accepted["id"].as_str().unwrap()
        )),
        None,
    );
    let (status, message) = call(&router, "nk_first", message).await;
    assert_eq!(status, 200, "{message}");
    assert!(
        message["email"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "List-Unsubscribe"),
        "{message}"
    );
    // A second token and a second link read nothing more.
    let again = api_event(
        "api-post-notification-now.json",
        Some("/v1/users/ada/tokens"),
        Some(json!({})),
    );
    assert_eq!(call(&router, "nk_first", again).await.0, 201);
    let reads = proxy.report().await["calls"]["secretsmanager.GetSecretValue"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        reads, 2,
        "one read of each key: the user tokens' and the links'"
    );
}
