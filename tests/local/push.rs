//! Web Push on notifyd over real HTTP: browsers register their subscriptions with the user's
//! token (or the backend with the API key), a push reaches each browser encrypted to it (a
//! local push service decrypts it with PyPI's `http_ece` and checks the VAPID token with
//! `cryptography`), a browser that unsubscribed (410) is removed; apps get theirs through FCM
//! (a stand-in for Google's endpoints checks the service account's JWT and each message), an
//! uninstalled app's token is removed; bad input is named.

use std::time::Duration;

use notify_tests::{FcmStandin, Notifyd, PushService};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn user_token(d: &Notifyd, user: &str) -> String {
    let a = d.post(&format!("/v1/users/{user}/tokens"), json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body["token"].as_str().unwrap().to_owned()
}

async fn register(
    d: &Notifyd,
    user: &str,
    token: &str,
    subscription: &Value,
) -> notify_tests::Answer {
    d.send(
        reqwest::Client::new()
            .post(d.url(&format!("/v1/users/{user}/push-subscriptions")))
            .bearer_auth(token)
            .json(subscription),
    )
    .await
}

#[tokio::test]
async fn a_push_reaches_each_browser_encrypted_to_it_and_a_gone_browser_is_removed() {
    let push = PushService::start().await;
    // The push service is on loopback: allowed here, refused in a deployment.
    let d = Notifyd::start(&[("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    for user in ["ada", "bob"] {
        assert_eq!(
            d.put(&format!("/v1/users/{user}"), json!({})).await.status,
            200
        );
    }
    let key = d
        .send(reqwest::Client::new().get(d.url("/v1/push/vapid-public-key")))
        .await;
    assert_eq!(
        key.status, 200,
        "public, for the page's applicationServerKey"
    );
    let vapid = key.body["public_key"].as_str().unwrap().to_owned();
    push.configure(&["ada-old-phone"], &vapid).await;

    let ada = user_token(&d, "ada").await;
    let (laptop, phone) = (
        push.subscribe("ada-laptop").await,
        push.subscribe("ada-old-phone").await,
    );
    let mut browser_json = laptop.clone();
    browser_json["expirationTime"] = Value::Null; // as PushSubscription.toJSON() gives it
    let a = register(&d, "ada", &ada, &browser_json).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert!(a.body.get("keys").is_none(), "keys are never shown");
    // The backend may register too, with the API key.
    let b = d
        .post("/v1/users/ada/push-subscriptions", phone.clone())
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    // The same browser again: replaced, not added.
    assert_eq!(register(&d, "ada", &ada, &laptop).await.status, 201);
    // Ada's token cannot register for Bob.
    let bobs = push.subscribe("bob-laptop").await;
    assert_eq!(register(&d, "bob", &ada, &bobs).await.status, 401);
    assert_eq!(
        d.post("/v1/users/bob/push-subscriptions", bobs)
            .await
            .status,
        201
    );
    let listed = d.get("/v1/users/ada/push-subscriptions").await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        listed.text
    );

    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["push"],
                   "template": {"id": "shipped", "data": {"order": 7}}}),
        )
        .await;
    assert_eq!(a.status, 422, "the template must exist: {}", a.text);
    let t = d
        .put(
            "/v1/templates/shipped",
            json!({"push": {"title": "Order {{ order }} shipped", "body": "Tap to track", "url": "/orders/{{ order }}"}}),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["push"]["title"], "Order {{ order }} shipped");
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["push"],
                   "template": {"id": "shipped", "data": {"order": 7}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let n = d.wait_status(&id, &["completed"], WAIT).await;
    assert_eq!(n.body["counts"]["sent"], 1, "{}", n.text);

    let pushes = push.received();
    assert_eq!(pushes.len(), 2, "one per browser: {pushes:?}");
    let laptop_push = pushes.iter().find(|p| p["name"] == "ada-laptop").unwrap();
    assert_eq!(laptop_push["ok"], true, "{laptop_push}");
    assert_eq!(
        laptop_push["payload"],
        json!({"notification_id": id, "title": "Order 7 shipped", "body": "Tap to track", "url": "/orders/7"})
    );
    assert_eq!(
        laptop_push["claims"]["aud"],
        format!("http://127.0.0.1:{}", push.port)
    );
    assert_eq!(laptop_push["claims"]["sub"], "mailto:notify@localhost");
    let phone_push = pushes
        .iter()
        .find(|p| p["name"] == "ada-old-phone")
        .unwrap();
    assert_eq!(
        (phone_push["ok"].clone(), phone_push["status"].clone()),
        (json!(true), json!(410))
    );
    let left = d.get("/v1/users/ada/push-subscriptions").await;
    let endpoints: Vec<&str> = left.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        [laptop["endpoint"].as_str().unwrap()],
        "the gone browser is removed"
    );
    let deliveries = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    assert_eq!(deliveries.body["items"][0]["channel"], "push");

    // A user with no browser left: the delivery fails, saying why.
    let sid = left.body["items"][0]["id"].as_str().unwrap().to_owned();
    let gone = d
        .send(
            reqwest::Client::new()
                .delete(d.url(&format!("/v1/users/ada/push-subscriptions/{sid}")))
                .bearer_auth(&ada),
        )
        .await;
    assert_eq!(gone.status, 204);
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["push"], "content": {"push": {"title": "Hi"}}}),
        )
        .await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let n = d.wait_status(&id, &["failed"], WAIT).await;
    assert_eq!(n.body["status"], "failed", "{}", n.text);
    let why = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    assert!(why.text.contains("no push subscription"), "{}", why.text);
}

#[tokio::test]
async fn hostile_push_input_is_named_field_by_field() {
    let d = Notifyd::start(&[]).await;
    assert_eq!(d.put("/v1/users/ada", json!({})).await.status, 200);
    let cases = [
        (json!({}), vec!["endpoint", "keys"]),
        (
            json!({"endpoint": "ftp://x", "keys": {"p256dh": "AAAA", "auth": 7}}),
            vec!["endpoint", "keys.p256dh", "keys.auth"],
        ),
        (
            json!({"endpoint": "https://push.example/x", "keys": {"auth": "BTBZMqHH6r4Tts7J_aSIgg"}, "extra": 1}),
            vec!["keys.p256dh", "extra"],
        ),
    ];
    for (body, fields) in cases {
        let a = d
            .post("/v1/users/ada/push-subscriptions", body.clone())
            .await;
        assert_eq!(a.status, 422, "{body}: {}", a.text);
        let named: Vec<&str> = a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        for f in fields {
            assert!(named.contains(&f), "{body}: {f} not in {named:?}");
        }
    }
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"phone": "+821012345678"}, "channels": ["push"],
                   "content": {"push": {"body": "no title", "url": "javascript:alert(1)"}}}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    for f in ["channels", "content.push.title", "content.push.url"] {
        assert!(a.text.contains(f), "{f}: {}", a.text);
    }
    let bad_id = d.delete("/v1/users/ada/push-subscriptions/nope").await;
    assert_eq!(bad_id.status, 422);
    assert_eq!(bad_id.body["errors"][0]["field"], "subscription_id");
    let unknown = d
        .delete("/v1/users/ada/push-subscriptions/psh_0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(unknown.status, 404);
    let nobody = d
        .post(
            "/v1/users/nobody/push-subscriptions",
            json!({"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": {
                "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}),
        )
        .await;
    assert_eq!(nobody.status, 404);
}

#[tokio::test]
async fn apps_get_pushes_through_fcm_and_an_uninstalled_apps_token_is_removed() {
    let fcm = FcmStandin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("service-account.json");
    fcm.service_account(&account).await;
    fcm.unregister(&["app-uninstalled:APA91b"]).await;
    let d = Notifyd::start(&[
        ("NOTIFY_FCM_SERVICE_ACCOUNT", account.to_str().unwrap()),
        ("NOTIFY_FCM_API_URL", &fcm.url()),
    ])
    .await;
    assert_eq!(d.put("/v1/users/ada", json!({})).await.status, 200);
    let ada = user_token(&d, "ada").await;
    for token in ["app-phone:APA91b_x-Y", "app-uninstalled:APA91b"] {
        let a = register(&d, "ada", &ada, &json!({"fcm_token": token})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.body["kind"], "fcm");
        assert!(!a.text.contains(token), "the token is never shown");
    }
    let mut ids = Vec::new();
    for title in ["First", "Second"] {
        let a = d
            .post(
                "/v1/notifications",
                json!({"to": {"user_id": "ada"}, "channels": ["push"],
                       "content": {"push": {"title": title, "body": "b", "url": "https://example.com/x"}}}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        let id = a.body["id"].as_str().unwrap().to_owned();
        let n = d.wait_status(&id, &["completed"], WAIT).await;
        assert_eq!(n.body["counts"]["sent"], 1, "{}", n.text);
        ids.push(id);
    }
    let got = fcm.received();
    assert!(
        got.iter().all(|r| r["ok"] == true),
        "every request checks out: {got:?}"
    );
    let token_requests = got.iter().filter(|r| r["path"] == "/token").count();
    assert_eq!(token_requests, 1, "the access token is cached: {got:?}");
    let sends: Vec<&Value> = got.iter().filter(|r| r["path"] != "/token").collect();
    assert_eq!(
        sends.len(),
        3,
        "two to the phone, one to the uninstalled app: {sends:?}"
    );
    let first = sends
        .iter()
        .find(|r| r["message"]["token"] == "app-phone:APA91b_x-Y")
        .unwrap();
    assert_eq!(
        first["message"],
        json!({"token": "app-phone:APA91b_x-Y",
               "notification": {"title": "First", "body": "b"},
               "data": {"notification_id": ids[0], "url": "https://example.com/x"}})
    );
    let left = d.get("/v1/users/ada/push-subscriptions").await;
    assert_eq!(
        left.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        left.text
    );
}

#[tokio::test]
async fn twenty_slow_push_endpoints_take_one_timeout_not_twenty() {
    let push = PushService::start().await;
    let d = Notifyd::start(&[("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    assert_eq!(d.put("/v1/users/ada", json!({})).await.status, 200);
    let key = d
        .send(reqwest::Client::new().get(d.url("/v1/push/vapid-public-key")))
        .await;
    let vapid = key.body["public_key"].as_str().unwrap().to_owned();
    let ada = user_token(&d, "ada").await;
    let mut slow = Vec::new();
    for i in 0..20 {
        let name = format!("ada-{i}");
        let subscription = push.subscribe(&name).await;
        assert_eq!(register(&d, "ada", &ada, &subscription).await.status, 201);
        if i > 0 {
            slow.push(name);
        }
    }
    // Nineteen hang for 30 s; one answers at once.
    let slow_names: Vec<&str> = slow.iter().map(String::as_str).collect();
    push.slow(&slow_names, 30, &vapid).await;
    let started = std::time::Instant::now();
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["push"],
                   "content": {"push": {"title": "Hi"}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let n = d
        .wait_status(
            a.body["id"].as_str().unwrap(),
            &["completed"],
            Duration::from_secs(25),
        )
        .await;
    assert_eq!(n.body["status"], "completed", "{}", n.text);
    assert_eq!(n.body["counts"]["sent"], 1, "{}", n.text);
    // One after another with 10 s each, they took 190 s; all at once, one push timeout.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn without_private_targets_a_push_endpoint_must_be_a_known_push_service() {
    let push = PushService::start().await;
    let d = Notifyd::start(&[]).await;
    assert_eq!(d.put("/v1/users/ada", json!({})).await.status, 200);
    let ada = user_token(&d, "ada").await;
    // A real browser's subscription, but its endpoint is this machine's.
    let subscription = push.subscribe("ada-laptop").await;
    let a = register(&d, "ada", &ada, &subscription).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert_eq!(a.body["errors"][0]["field"], "endpoint", "{}", a.text);
    assert!(a.text.contains("push service"), "{}", a.text);
}
