//! The suppression list on AWS: made through the api handler, kept in DynamoDB, looked up by
//! the dispatch handler in one BatchGetItem per job (behind the fault proxy, which counts the
//! calls and returns part of a batch unprocessed), and the suppressed address skipped with its
//! reason before any SES or SNS call.

use notify_aws::handlers::dispatch_event;
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use serde_json::{Value, json};

pub(crate) async fn call(
    api: &mut ApiHandler,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut e = api_event("api-post-notification-now.json", Some(path), body);
    e["requestContext"]["http"]["method"] = json!(method);
    if e["body"] == json!(null) || method == "GET" || method == "DELETE" {
        e.as_object_mut().unwrap().remove("body");
    }
    let a = api.call(e).await;
    (a.status, a.body)
}

#[tokio::test]
async fn a_suppressed_address_is_skipped_before_any_provider_call() {
    let w = AwsWorld::start_with(WorldOptions {
        // Half of every BatchGetItem comes back unprocessed: the lookup must still see all.
        faults: Some(json!({"dynamodb.unprocessed": 0.5})),
        ..WorldOptions::default()
    })
    .await;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    let (status, s) = call(
        &mut api,
        "PUT",
        "/v1/suppressions/Gone@Example.com",
        Some(json!({"reason": "complaint"})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["address"], "gone@example.com");
    let (status, _) = call(
        &mut api,
        "PUT",
        "/v1/suppressions/%2B821012345678",
        Some(json!({"reason": "sms_opt_out"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, list) = call(&mut api, "GET", "/v1/suppressions", None).await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["+821012345678", "gone@example.com"]);

    for (user, email, phone) in [
        ("gone", "gone@example.com", "+821012345678"),
        ("here", "here@example.com", "+821099998888"),
    ] {
        let (status, body) = call(
            &mut api,
            "PUT",
            &format!("/v1/users/{user}"),
            Some(json!({"email": email, "phone": phone})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = call(
        &mut api,
        "PUT",
        "/v1/groups/all",
        Some(json!({"name": "All"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &mut api,
        "POST",
        "/v1/groups/all/members",
        Some(json!({"add": ["gone", "here"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, accepted) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({
            "to": {"group_id": "all"}, "channels": ["email", "sms"],
            "content": {"subject": "News", "text": "Hello", "sms": "Hello"},
        })),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();

    let before = proxy.report().await["calls"].clone();
    w.run_fanout().await;
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    let members: usize = e
        .records
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r.body.as_deref().unwrap()).unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        members, 2,
        "dispatch jobs for the two members, in one receive"
    );
    let r = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let after = proxy.report().await["calls"].clone();
    let ses = |c: &Value| c["ses.SendEmail"].as_u64().unwrap_or(0);
    let sns = |c: &Value| c["sns.Publish"].as_u64().unwrap_or(0);
    assert_eq!(
        (ses(&after) - ses(&before), sns(&after) - sns(&before)),
        (1, 1),
        "only the address that is not suppressed: {after}"
    );

    let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
    assert_eq!(n["status"], "completed", "{n}");
    assert_eq!(
        n["counts"],
        json!({"recipients": 4, "pending": 0, "sent": 2, "failed": 0, "skipped": 2, "delivered": 0, "bounced": 0, "complained": 0})
    );
    let (_, d) = call(
        &mut api,
        "GET",
        &format!("/v1/notifications/{id}/deliveries"),
        None,
    )
    .await;
    for item in d["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["user_id"] == "gone")
    {
        let why = if item["channel"] == "email" {
            "suppressed: complaint"
        } else {
            "suppressed: sms_opt_out"
        };
        assert_eq!(
            (&item["status"], &item["error"]),
            (&json!("skipped"), &json!(why)),
            "{item}"
        );
    }
    let mails = w.moto.raw_emails().await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to_string().contains("here@example.com"));

    let (status, _) = call(
        &mut api,
        "DELETE",
        "/v1/suppressions/gone@example.com",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(&mut api, "GET", "/v1/suppressions/gone@example.com", None).await;
    assert_eq!(status, 404);
}
