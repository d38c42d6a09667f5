//! The in-app inbox on AWS, through the handlers: a group send on the `in_app` channel under
//! DynamoDB's transaction conflicts, throttling and 500s and SQS's duplicates leaves exactly
//! one item per member with exact counts; the stream (no live feed in a Lambda) sends what the
//! client missed and closes with a `retry`, and `Last-Event-ID` resumes it exactly.

use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use serde_json::{Value, json};

use crate::suppressions::call;

const MEMBERS: usize = 30;

/// A request of a user's browser: the user token instead of the API key.
async fn as_user(
    api: &mut ApiHandler,
    method: &str,
    path: &str,
    query: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> notify_tests::aws::ApiAnswer {
    let mut e = api_event("api-get-user.json", Some(path), None);
    e["requestContext"]["http"]["method"] = json!(method);
    e["rawQueryString"] = json!(query);
    e["headers"]["authorization"] = json!(format!("Bearer {token}"));
    if let Some(id) = last_event_id {
        e["headers"]["last-event-id"] = json!(id);
    }
    api.call(e).await
}

/// `(event, id, data)` of each event of a finished SSE body, and its `retry`.
fn events(body: &Value) -> (Vec<(String, String, Value)>, Option<u64>) {
    let text = body.as_str().expect("an event stream is text");
    let mut out = Vec::new();
    let mut retry = None;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let (mut event, mut id, mut data) = (String::new(), String::new(), Value::Null);
        for line in block.lines() {
            match line.split_once(':') {
                Some(("event", v)) => event = v.trim().to_owned(),
                Some(("id", v)) => id = v.trim().to_owned(),
                Some(("data", v)) => data = serde_json::from_str(v.trim()).unwrap(),
                Some(("retry", v)) => retry = v.trim().parse().ok(),
                _ => {}
            }
        }
        if !event.is_empty() {
            out.push((event, id, data));
        }
    }
    (out, retry)
}

async fn send(api: &mut ApiHandler, to: Value, title: &str) -> String {
    let (status, accepted) = call(
        api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": to, "channels": ["in_app"],
                    "content": {"in_app": {"title": title, "body": "b"}}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    accepted["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_group_send_leaves_one_item_per_member_under_faults_and_the_stream_resumes_exactly() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        ..WorldOptions::default()
    })
    .await;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    for m in &members {
        let (status, body) =
            call(&mut api, "PUT", &format!("/v1/users/{m}"), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    call(
        &mut api,
        "PUT",
        "/v1/groups/all",
        Some(json!({"name": "All"})),
    )
    .await;
    let (status, body) = call(
        &mut api,
        "POST",
        "/v1/groups/all/members",
        Some(json!({"add": members})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, minted) = call(&mut api, "POST", "/v1/users/m7/tokens", Some(json!({}))).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_owned();
    let (_, other) = call(&mut api, "POST", "/v1/users/m8/tokens", Some(json!({}))).await;
    let other = other["token"].as_str().unwrap().to_owned();

    // A stream opened before anything: the counts, the position to come back to, a retry.
    let first = as_user(&mut api, "GET", "/v1/inbox/stream", "", &token, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.headers["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (evs, retry) = events(&first.body);
    assert_eq!(
        evs,
        [(
            "counts".to_owned(),
            "0".to_owned(),
            json!({"unread": 0, "unseen": 0})
        )]
    );
    assert_eq!(retry, Some(3000), "the browser comes back in 3 s");

    proxy
        .set(json!({
            "dynamodb.transaction_conflict": 0.2,
            "dynamodb.throttle": 0.05,
            "dynamodb.internal_error": 0.02,
            "sqs.duplicate": 0.2,
        }))
        .await;
    let one = send(&mut api, json!({"group_id": "all"}), "one").await;
    w.run_queues().await;
    let two = send(&mut api, json!({"group_id": "all"}), "two").await;
    w.run_queues().await;
    proxy.set(json!({})).await;
    let report = proxy.report().await;
    assert!(
        report["injected"]["dynamodb.transaction_conflict"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "conflicts happened: {report}"
    );
    for id in [&one, &two] {
        let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
        assert_eq!(n["status"], "completed", "{n}");
        assert_eq!(n["counts"]["sent"], MEMBERS, "{n}");
    }
    for m in ["m0", "m7", "m29"] {
        let (_, t) = call(
            &mut api,
            "POST",
            &format!("/v1/users/{m}/tokens"),
            Some(json!({})),
        )
        .await;
        let t = t["token"].as_str().unwrap().to_owned();
        let inbox = as_user(&mut api, "GET", "/v1/inbox", "", &t, None).await;
        let ids: Vec<&str> = inbox.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [two.as_str(), one.as_str()],
            "{m}: one item each, newest first"
        );
        let count = as_user(&mut api, "GET", "/v1/inbox/count", "", &t, None).await;
        assert_eq!(count.body, json!({"unread": 2, "unseen": 2}), "{m}");
    }

    // Back with the id it had: exactly the two items it missed, in order.
    let back = as_user(&mut api, "GET", "/v1/inbox/stream", "", &token, Some("0")).await;
    let (evs, _) = events(&back.body);
    let items: Vec<(String, String)> = evs
        .iter()
        .filter(|(e, _, _)| e == "item")
        .map(|(_, id, data)| (id.clone(), data["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        items,
        [("1".to_owned(), one.clone()), ("2".to_owned(), two.clone())]
    );
    let read = as_user(
        &mut api,
        "POST",
        &format!("/v1/inbox/{one}/read"),
        "",
        &token,
        None,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let stolen = as_user(
        &mut api,
        "POST",
        &format!("/v1/inbox/{two}/read"),
        "",
        &other,
        None,
    )
    .await;
    assert_eq!(
        stolen.status, 200,
        "m8 marks its own item of that notification"
    );
    let three = send(&mut api, json!({"user_id": "m7"}), "three").await;
    w.run_queues().await;
    let again = as_user(&mut api, "GET", "/v1/inbox/stream", "", &token, Some("2")).await;
    let (evs, _) = events(&again.body);
    assert_eq!(
        evs[0].2,
        json!({"unread": 2, "unseen": 2}),
        "m8's read is not m7's"
    );
    let items: Vec<&str> = evs
        .iter()
        .filter(|(e, _, _)| e == "item")
        .map(|(_, _, d)| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(items, [three.as_str()]);
    let key = as_user(
        &mut api,
        "GET",
        "/v1/inbox",
        "",
        notify_tests::aws::API_KEY,
        None,
    )
    .await;
    assert_eq!(key.status, 401, "the API key does not open an inbox");
}
