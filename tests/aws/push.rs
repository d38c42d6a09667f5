//! Web Push on AWS, through the handlers: the api function serves the VAPID public key and
//! takes subscriptions from a user's browser; dispatch (its sender made at the first push)
//! reaches each browser once, even when SQS delivers the job twice, encrypted to it as a local
//! push service checks with PyPI's `http_ece`; a browser that unsubscribed is removed.

use notify_tests::PushService;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use serde_json::json;

use crate::suppressions::call;

#[tokio::test]
async fn each_browser_gets_one_push_under_duplicate_deliveries_and_a_gone_one_is_removed() {
    let push = PushService::start().await;
    let mut w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({"sqs.duplicate": 0.5})),
        // A job reported back (a duplicate that found its deliveries claimed) is soon seen again.
        dispatch_visibility: 2,
        ..WorldOptions::default()
    })
    .await;
    w.with_vapid_key().await;
    // The push service is on loopback.
    w.config.webhook_allow_private = true;
    let mut api = ApiHandler::new(&w);
    let mut key = api_event("api-get-user.json", Some("/v1/push/vapid-public-key"), None);
    key["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let key = api.call(key).await;
    assert_eq!(key.status, 200, "{}", key.body);
    push.configure(&["cy-old"], key.body["public_key"].as_str().unwrap())
        .await;

    let users = ["ada", "bob", "cy"];
    for user in users {
        let (status, body) = call(
            &mut api,
            "PUT",
            &format!("/v1/users/{user}"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, minted) = call(
            &mut api,
            "POST",
            &format!("/v1/users/{user}/tokens"),
            Some(json!({})),
        )
        .await;
        let token = minted["token"].as_str().unwrap();
        // From the browser, with the user's token.
        let mut register = api_event(
            "api-get-user.json",
            Some(&format!("/v1/users/{user}/push-subscriptions")),
            Some(push.subscribe(user).await),
        );
        register["requestContext"]["http"]["method"] = json!("POST");
        register["headers"]["authorization"] = json!(format!("Bearer {token}"));
        let a = api.call(register).await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let (status, body) = call(
        &mut api,
        "POST",
        "/v1/users/cy/push-subscriptions",
        Some(push.subscribe("cy-old").await),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    call(
        &mut api,
        "PUT",
        "/v1/groups/all",
        Some(json!({"name": "All"})),
    )
    .await;
    call(
        &mut api,
        "POST",
        "/v1/groups/all/members",
        Some(json!({"add": users})),
    )
    .await;

    let (status, accepted) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"group_id": "all"}, "channels": ["push"],
                    "content": {"push": {"title": "Doors open", "url": "https://example.com/live"}}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    // The event source mappings, as they behave when SQS delivers twice: a copy may find its
    // deliveries claimed by the other and come back later.
    let fanout = notify_aws::wiring::fanout(&w.config, &w.sdk);
    let dispatch = notify_aws::wiring::dispatch(&w.config, &w.sdk).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
        let r =
            notify_aws::handlers::fanout_event(&fanout, e.clone(), w.config.fanout_max_receives)
                .await;
        w.settle(&w.config.fanout_queue_url, &e, &r).await;
        let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
        let r = notify_aws::handlers::dispatch_event(
            &dispatch,
            e.clone(),
            notify_tests::aws::dispatch_deadline(),
        )
        .await;
        w.settle(&w.config.dispatch_queue_url, &e, &r).await;
        let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
        if n["status"] == "completed" || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Copies still on the queue find their deliveries done.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for _ in 0..5 {
        let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
        let r = notify_aws::handlers::dispatch_event(
            &dispatch,
            e.clone(),
            notify_tests::aws::dispatch_deadline(),
        )
        .await;
        w.settle(&w.config.dispatch_queue_url, &e, &r).await;
    }
    let report = w.proxy.as_ref().unwrap().report().await;
    assert!(
        report["injected"]["sqs.duplicate"].as_u64().unwrap_or(0) > 0,
        "SQS delivered twice: {report}"
    );
    let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
    assert_eq!(n["status"], "completed", "{n}");
    assert_eq!(n["counts"]["sent"], 3, "{n}");

    let pushes = push.received();
    let mut names: Vec<&str> = pushes.iter().map(|p| p["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["ada", "bob", "cy", "cy-old"],
        "one push per browser: {pushes:?}"
    );
    for p in pushes.iter().filter(|p| p["name"] != "cy-old") {
        assert_eq!(p["ok"], true, "{p}");
        assert_eq!(
            p["payload"],
            json!({"notification_id": id, "title": "Doors open", "body": null, "url": "https://example.com/live"})
        );
    }
    let (_, left) = call(&mut api, "GET", "/v1/users/cy/push-subscriptions", None).await;
    assert_eq!(
        left["items"].as_array().unwrap().len(),
        1,
        "the gone browser is removed: {left}"
    );
}

#[tokio::test]
async fn a_vapid_secret_that_does_not_match_the_public_key_fails_the_push_with_the_reason() {
    let push = PushService::start().await;
    let mut w = AwsWorld::start().await;
    w.with_vapid_key().await;
    // The stack's VapidPublicKey of another pair.
    let other = notify_core::web_push::VapidKey::generate();
    w.config.vapid_public_key = Some(
        notify_core::web_push::VapidKey::from_pkcs8(&other)
            .unwrap()
            .public_key(),
    );
    w.config.webhook_allow_private = true;
    let mut api = ApiHandler::new(&w);
    let (status, _) = call(&mut api, "PUT", "/v1/users/ada", Some(json!({}))).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &mut api,
        "POST",
        "/v1/users/ada/push-subscriptions",
        Some(push.subscribe("ada").await),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, sent) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"user_id": "ada"}, "channels": ["push"],
                    "content": {"push": {"title": "Hi"}}})),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    w.run_queues().await;
    let id = sent["id"].as_str().unwrap();
    let (_, deliveries) = call(
        &mut api,
        "GET",
        &format!("/v1/notifications/{id}/deliveries"),
        None,
    )
    .await;
    let delivery = &deliveries["items"][0];
    assert_eq!(delivery["status"], "failed", "{deliveries}");
    assert!(
        delivery["error"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{deliveries}"
    );
    assert!(push.received().is_empty(), "nothing was pushed");
}
