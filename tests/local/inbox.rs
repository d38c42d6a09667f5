//! The in-app inbox on notifyd over real HTTP: user tokens minted by the backend, each user
//! seeing and changing only their own inbox, counts, the SSE stream live and resumed with
//! `Last-Event-ID`, CORS for the product's origin, and hostile input named field by field.

use std::time::Duration;

use notify_core::domain::UserId;
use notify_core::domain::user_token::UserToken;
use notify_tests::sse::SseStream;
use notify_tests::{Answer, Notifyd};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const ORIGIN: &str = "https://app.example.com";

async fn token(d: &Notifyd, user: &str) -> String {
    let a = d.post(&format!("/v1/users/{user}/tokens"), json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["user_id"], user);
    a.body["token"].as_str().unwrap().to_owned()
}

/// A request of the user's browser: the user token, never the API key.
async fn as_user(d: &Notifyd, method: reqwest::Method, path: &str, token: &str) -> Answer {
    d.send(
        reqwest::Client::new()
            .request(method, d.url(path))
            .bearer_auth(token),
    )
    .await
}

async fn send_in_app(d: &Notifyd, to: Value, title: &str) -> String {
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": to, "channels": ["in_app"], "category": "orders",
                   "content": {"in_app": {"title": title, "body": "Your order shipped", "url": "/orders/7"}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let n = d.wait_status(&id, &["completed"], WAIT).await;
    assert_eq!(n.body["status"], "completed", "{}", n.text);
    id
}

async fn users(d: &Notifyd, ids: &[&str]) {
    d.put_group_of(
        "team",
        ids.iter()
            .map(|u| (u.to_string(), json!({"email": format!("{u}@example.org")})))
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn each_user_reads_and_marks_only_their_own_inbox() {
    let d = Notifyd::start(&[]).await;
    users(&d, &["ada", "bob"]).await;
    let ada = token(&d, "ada").await;
    let bob = token(&d, "bob").await;
    let first = send_in_app(&d, json!({"user_id": "ada"}), "For Ada").await;
    send_in_app(&d, json!({"group_id": "team"}), "For the team").await;

    let inbox = as_user(&d, reqwest::Method::GET, "/v1/inbox", &ada).await;
    assert_eq!(inbox.status, 200, "{}", inbox.text);
    let titles: Vec<&str> = inbox.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["For the team", "For Ada"], "newest first");
    let item = &inbox.body["items"][1];
    assert_eq!(item["id"], first.as_str());
    assert_eq!(
        (&item["body"], &item["url"], &item["category"]),
        (
            &json!("Your order shipped"),
            &json!("/orders/7"),
            &json!("orders")
        )
    );
    let bobs = as_user(&d, reqwest::Method::GET, "/v1/inbox", &bob).await;
    assert_eq!(bobs.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(bobs.body["items"][0]["title"], "For the team");

    let count = |t: String| {
        let d = &d;
        async move {
            as_user(d, reqwest::Method::GET, "/v1/inbox/count", &t)
                .await
                .body
        }
    };
    assert_eq!(count(ada.clone()).await, json!({"unread": 2, "unseen": 2}));
    // Bob cannot touch Ada's item: to him it does not exist.
    let theft = as_user(
        &d,
        reqwest::Method::POST,
        &format!("/v1/inbox/{first}/read"),
        &bob,
    )
    .await;
    assert_eq!(theft.status, 404, "{}", theft.text);
    assert_eq!(count(ada.clone()).await, json!({"unread": 2, "unseen": 2}));

    let read = as_user(
        &d,
        reqwest::Method::POST,
        &format!("/v1/inbox/{first}/read"),
        &ada,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(read.body["read_at"].is_string());
    assert_eq!(count(ada.clone()).await, json!({"unread": 1, "unseen": 1}));
    let unread = as_user(&d, reqwest::Method::GET, "/v1/inbox?unread=true", &ada).await;
    assert_eq!(unread.body["items"].as_array().unwrap().len(), 1);
    let all = as_user(&d, reqwest::Method::POST, "/v1/inbox/read-all", &ada).await;
    assert_eq!(all.body, json!({"changed": 1}));
    assert_eq!(count(ada.clone()).await, json!({"unread": 0, "unseen": 0}));
    assert_eq!(count(bob.clone()).await, json!({"unread": 1, "unseen": 1}));
    let archived = as_user(
        &d,
        reqwest::Method::POST,
        &format!("/v1/inbox/{first}/archive"),
        &ada,
    )
    .await;
    assert_eq!(archived.status, 200);
    let left = as_user(&d, reqwest::Method::GET, "/v1/inbox", &ada).await;
    assert_eq!(left.body["items"].as_array().unwrap().len(), 1);
    let shelf = as_user(&d, reqwest::Method::GET, "/v1/inbox?archived=true", &ada).await;
    assert_eq!(shelf.body["items"][0]["id"], first.as_str());

    // Preferences and channel opt-outs hold for the inbox as for email and SMS.
    let p = d
        .put(
            "/v1/users/bob/preferences",
            json!({"categories": {"orders": {"in_app": false}}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    let skipped = send_in_app(&d, json!({"group_id": "team"}), "Not for Bob").await;
    let rows = d
        .get(&format!("/v1/notifications/{skipped}/deliveries"))
        .await;
    let bob_row = rows.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user_id"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(
        (&bob_row["status"], &bob_row["error"]),
        (&json!("skipped"), &json!("unsubscribed: orders")),
        "{bob_row}"
    );
    assert_eq!(count(bob.clone()).await, json!({"unread": 1, "unseen": 1}));
}

#[tokio::test]
async fn only_a_valid_unexpired_user_token_opens_the_inbox_and_it_opens_nothing_else() {
    let d = Notifyd::start(&[]).await;
    users(&d, &["ada"]).await;
    let ada = token(&d, "ada").await;
    let key = std::fs::read_to_string(d.data_dir.path().join("user-token-key")).unwrap();
    let now = jiff::Timestamp::now();
    let expired = UserToken {
        user_id: UserId::parse("ada").unwrap(),
        expires_at: now - jiff::SignedDuration::from_secs(1),
        generation: 0,
    }
    .sign(
        key.trim().as_bytes(),
        now - jiff::SignedDuration::from_secs(3600),
    );
    let other_deployment = UserToken {
        user_id: UserId::parse("ada").unwrap(),
        expires_at: now + jiff::SignedDuration::from_secs(3600),
        generation: 0,
    }
    .sign(b"someone else's key", now);
    let mut altered = ada.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });

    for (why, bad) in [
        ("expired", expired.as_str()),
        ("signed elsewhere", other_deployment.as_str()),
        ("altered", altered.as_str()),
        ("the API key", d.api_key()),
        ("garbage", "not-a-token"),
    ] {
        for path in ["/v1/inbox", "/v1/inbox/count", "/v1/inbox/stream"] {
            let a = as_user(&d, reqwest::Method::GET, path, bad).await;
            assert_eq!(a.status, 401, "{why} on {path}: {}", a.text);
            assert_eq!(a.header("content-type"), Some("application/problem+json"));
        }
    }
    let none = d.send(reqwest::Client::new().get(d.url("/v1/inbox"))).await;
    assert_eq!(none.status, 401);
    assert!(none.body["detail"].as_str().unwrap().contains("user token"));
    // A user token is not an API key.
    for path in [
        "/v1/users/ada",
        "/v1/notifications",
        "/v1/users/ada/preferences",
    ] {
        let a = as_user(&d, reqwest::Method::GET, path, &ada).await;
        assert_eq!(a.status, 401, "{path}");
    }
    let minted = as_user(&d, reqwest::Method::POST, "/v1/users/ada/tokens", &ada).await;
    assert_eq!(minted.status, 401, "a user cannot mint tokens");
    // The stream takes its token in the query (EventSource sends no headers); it is never logged.
    let mut stream = SseStream::open(&d.url("/v1/inbox/stream"), &ada, None).await;
    let first = stream.next(WAIT).await.unwrap();
    assert_eq!(first.event, "counts");
    drop(stream);
    let d = Notifyd::start_process(&[("RUST_LOG", "debug")]).await;
    users(&d, &["ada"]).await;
    let ada = token(&d, "ada").await;
    let mut stream = SseStream::open(&d.url("/v1/inbox/stream"), &ada, None).await;
    stream.next(WAIT).await.unwrap();
    drop(stream);
    as_user(&d, reqwest::Method::GET, "/v1/inbox/count", &ada).await;
    let log = d.log();
    assert!(log.contains("/v1/inbox/stream"), "requests are logged");
    assert!(!log.contains(&ada), "a user token never reaches the log");
}

#[tokio::test]
async fn a_stream_gets_each_item_once_and_a_reconnect_gets_exactly_what_it_missed() {
    let d = Notifyd::start(&[]).await;
    let members: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    let ids: Vec<&str> = members.iter().map(String::as_str).collect();
    users(&d, &ids).await;
    let u3 = token(&d, "u3").await;
    let url = d.url("/v1/inbox/stream");

    let mut stream = SseStream::open(&url, &u3, None).await;
    let hello = stream.next(WAIT).await.unwrap();
    assert_eq!(
        (hello.event.as_str(), hello.id.as_deref(), &hello.data),
        ("counts", Some("0"), &json!({"unread": 0, "unseen": 0}))
    );
    let first = send_in_app(&d, json!({"group_id": "team"}), "one").await;
    let second = send_in_app(&d, json!({"group_id": "team"}), "two").await;
    let mut items = Vec::new();
    let mut last_counts = None;
    while items.len() < 2 || last_counts != Some(json!({"unread": 2, "unseen": 2})) {
        let e = stream.next(WAIT).await.expect("the stream goes on");
        match e.event.as_str() {
            "item" => items.push(e),
            "counts" => last_counts = Some(e.data),
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(
        items
            .iter()
            .map(|e| (
                e.id.clone().unwrap(),
                e.data["id"].as_str().unwrap().to_owned()
            ))
            .collect::<Vec<_>>(),
        [("1".to_owned(), first.clone()), ("2".to_owned(), second)],
        "each item once, in order, its seq as the event id"
    );
    assert!(
        stream
            .drain(Duration::from_millis(500))
            .await
            .iter()
            .all(|e| e.event == "counts"),
        "no item twice"
    );
    // Reading elsewhere (another tab) moves the count on this stream.
    as_user(
        &d,
        reqwest::Method::POST,
        &format!("/v1/inbox/{first}/read"),
        &u3,
    )
    .await;
    let moved = stream.next(WAIT).await.unwrap();
    assert_eq!(
        (moved.event.as_str(), &moved.data),
        ("counts", &json!({"unread": 1, "unseen": 1}))
    );
    drop(stream);

    // Away: two more sends. Back with Last-Event-ID = 2: exactly those two, then live again.
    let third = send_in_app(&d, json!({"group_id": "team"}), "three").await;
    let fourth = send_in_app(&d, json!({"user_id": "u3"}), "four").await;
    let mut back = SseStream::open(&url, &u3, Some("2")).await;
    let hello = back.next(WAIT).await.unwrap();
    assert_eq!(
        (hello.event.as_str(), hello.id.as_deref()),
        ("counts", Some("2"))
    );
    let missed: Vec<String> = [
        back.next(WAIT).await.unwrap(),
        back.next(WAIT).await.unwrap(),
    ]
    .iter()
    .map(|e| {
        assert_eq!(e.event, "item");
        e.data["id"].as_str().unwrap().to_owned()
    })
    .collect();
    assert_eq!(missed, [third, fourth]);
    let fifth = send_in_app(&d, json!({"user_id": "u3"}), "five").await;
    let live = loop {
        let e = back.next(WAIT).await.unwrap();
        if e.event == "item" {
            break e;
        }
    };
    assert_eq!(
        (live.id.as_deref(), live.data["id"].as_str()),
        (Some("5"), Some(fifth.as_str()))
    );
}

#[tokio::test]
async fn the_products_origin_may_call_the_inbox_from_a_browser_and_others_may_not() {
    let d = Notifyd::start(&[("NOTIFY_CORS_ORIGINS", ORIGIN)]).await;
    let preflight = |origin: &'static str| {
        let d = &d;
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, d.url("/v1/inbox"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
                .await
                .unwrap()
        }
    };
    let ok = preflight(ORIGIN).await;
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some(ORIGIN)
    );
    assert!(
        ok.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let evil = preflight("https://evil.example").await;
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    // The page may remove its own push subscription, as the README tells it to.
    let delete = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            d.url("/v1/users/ada/push-subscriptions/psh_0123456789abcdef0123456789abcdef"),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(
        delete.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("DELETE"),
        "{:?}",
        delete.headers()
    );
}

#[tokio::test]
async fn hostile_inbox_and_token_input_is_named_field_by_field() {
    let d = Notifyd::start(&[]).await;
    users(&d, &["ada"]).await;
    let ada = token(&d, "ada").await;
    let cases = [
        (
            "/v1/users/ada/tokens",
            json!({"ttl_seconds": 5}),
            vec!["ttl_seconds"],
        ),
        (
            "/v1/users/ada/tokens",
            json!({"ttl_seconds": "long", "scope": "all"}),
            vec!["ttl_seconds", "scope"],
        ),
        (
            "/v1/notifications",
            json!({"to": {"email": "a@example.org"}, "channels": ["in_app"],
                   "content": {"in_app": {"title": 7, "url": "javascript:alert(1)"}}}),
            vec![
                "channels",
                "content.in_app.title",
                "content.in_app.body",
                "content.in_app.url",
            ],
        ),
        (
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["in_app", "push!"],
                   "content": {"subject": "s", "text": "t"}}),
            vec!["channels[1]", "content.in_app.body"],
        ),
    ];
    for (path, body, fields) in cases {
        let a = d.post(path, body.clone()).await;
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
    let t = d
        .put(
            "/v1/templates/bad",
            json!({"in_app": {"title": "{{ x", "url": "//evil.example/"}}),
        )
        .await;
    assert_eq!(t.status, 422, "{}", t.text);
    assert!(
        t.text.contains("in_app.body") && t.text.contains("in_app.url"),
        "{}",
        t.text
    );
    let t = d
        .put(
            "/v1/templates/bad",
            json!({"in_app": {"title": "{{ x", "body": "b"}}),
        )
        .await;
    assert_eq!(t.status, 422, "{}", t.text);
    assert_eq!(t.body["errors"][0]["field"], "in_app.title", "{}", t.text);
    assert_eq!(
        d.post("/v1/users/nobody/tokens", json!({})).await.status,
        404
    );
    let no_body = d
        .send(d.request(reqwest::Method::POST, "/v1/users/ada/tokens"))
        .await;
    assert_eq!(
        no_body.status, 201,
        "the body may be left out: {}",
        no_body.text
    );

    for (path, field) in [
        ("/v1/inbox?unread=maybe", "unread"),
        ("/v1/inbox?limit=0", "limit"),
        ("/v1/inbox/nope/read", "id"),
    ] {
        let method = if path.ends_with("/read") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let a = as_user(&d, method, path, &ada).await;
        assert_eq!(a.status, 422, "{path}: {}", a.text);
        assert_eq!(a.body["errors"][0]["field"], field, "{path}");
    }
    let cursor = as_user(&d, reqwest::Method::GET, "/v1/inbox?cursor=zz", &ada).await;
    assert_eq!(cursor.status, 422, "{}", cursor.text);
    let unknown = as_user(
        &d,
        reqwest::Method::POST,
        "/v1/inbox/ntf_01m7xpe600vzq93c83bpwqm4nf/read",
        &ada,
    )
    .await;
    assert_eq!(unknown.status, 404);
    let stream = d
        .send(
            reqwest::Client::new()
                .get(d.url("/v1/inbox/stream"))
                .bearer_auth(&ada)
                .header("last-event-id", "yesterday"),
        )
        .await;
    assert_eq!(stream.status, 422, "{}", stream.text);
    assert_eq!(stream.body["errors"][0]["field"], "Last-Event-ID");
    assert!(d.get("/healthz").await.status == 200, "still serving");
}

#[tokio::test]
async fn a_users_sixth_stream_closes_their_oldest_and_others_are_untouched() {
    let d = Notifyd::start(&[]).await;
    for user in ["ada", "bob"] {
        let a = d.put(&format!("/v1/users/{user}"), json!({})).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let (ada, bob) = (token(&d, "ada").await, token(&d, "bob").await);
    let url = d.url("/v1/inbox/stream");
    let mut bobs = SseStream::open(&url, &bob, None).await;
    let mut adas = Vec::new();
    for _ in 0..5 {
        let mut s = SseStream::open(&url, &ada, None).await;
        assert_eq!(s.next(WAIT).await.unwrap().event, "counts");
        adas.push(s);
    }
    // The sixth: Ada's oldest ends, the other four and Bob's stay open.
    let mut sixth = SseStream::open(&url, &ada, None).await;
    assert_eq!(sixth.next(WAIT).await.unwrap().event, "counts");
    assert!(
        adas[0].ends_within(WAIT).await,
        "the oldest stream was closed"
    );
    for s in &mut adas[1..] {
        assert!(!s.ends_within(Duration::from_millis(200)).await);
    }
    assert!(!bobs.ends_within(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let d = Notifyd::start(&[]).await;
    assert_eq!(d.put("/v1/users/ada", json!({})).await.status, 200);
    // The shortest lifetime a token may have.
    let a = d
        .post("/v1/users/ada/tokens", json!({"ttl_seconds": 60}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let short = a.body["token"].as_str().unwrap().to_owned();
    let mut stream = SseStream::open(&d.url("/v1/inbox/stream"), &short, None).await;
    assert_eq!(stream.next(WAIT).await.unwrap().event, "counts");
    assert!(
        !stream.ends_within(Duration::from_secs(50)).await,
        "open while the token lasts"
    );
    assert!(
        stream.ends_within(Duration::from_secs(15)).await,
        "the stream outlived its token"
    );
}

#[tokio::test]
async fn tokens_end_when_revoked_and_when_their_user_is_deleted_even_for_a_new_user_of_that_id() {
    let d = Notifyd::start(&[]).await;
    users(&d, &["ada", "bob"]).await;
    let (ada, bob) = (token(&d, "ada").await, token(&d, "bob").await);
    let inbox = |t: String| {
        let d = &d;
        async move {
            as_user(d, reqwest::Method::GET, "/v1/inbox", &t)
                .await
                .status
        }
    };
    assert_eq!(inbox(ada.clone()).await, 200);

    // A revoke ends every token of Ada's so far, at once; Bob's go on; a new one works.
    assert_eq!(d.delete("/v1/users/ada/tokens").await.status, 204);
    let refused = as_user(&d, reqwest::Method::GET, "/v1/inbox", &ada).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(refused.text.contains("revoked"), "{}", refused.text);
    assert_eq!(inbox(bob.clone()).await, 200);
    let again = token(&d, "ada").await;
    assert_eq!(inbox(again.clone()).await, 200);
    assert_eq!(d.delete("/v1/users/nobody/tokens").await.status, 404);

    // Deleted, Ada's tokens end; made again under the same id, the old ones stay refused.
    assert_eq!(d.delete("/v1/users/ada").await.status, 204);
    assert_eq!(inbox(again.clone()).await, 401);
    users(&d, &["ada"]).await;
    assert_eq!(
        inbox(again).await,
        401,
        "a new ada revived the old one's token"
    );
    let fresh = token(&d, "ada").await;
    assert_eq!(inbox(fresh).await, 200);
}
