//! The suppression list on AWS: made through the api handler, kept in DynamoDB, looked up by
//! the dispatch handler in one BatchGetItem per job (behind the fault proxy, which counts the
//! calls and returns part of a batch unprocessed), and the suppressed address skipped with its
//! reason before any SES or SNS call.

use notify_aws::handlers::{dispatch_event, fanout_event};
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use serde_json::{Value, json};

async fn call(api: &mut ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
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
    let fanout = wiring::fanout(&w.config, &w.sdk);
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
    let r = fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
    assert!(r.batch_item_failures.is_empty());
    w.settle(&w.config.fanout_queue_url, &e, &r).await;
    let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(e.records.len(), 1, "one dispatch job for the two members");
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

/// One field of each delivery of notification `id`, by user.
async fn by_user(
    api: &mut ApiHandler,
    id: &str,
    field: &str,
) -> std::collections::HashMap<String, Value> {
    let (_, d) = call(
        api,
        "GET",
        &format!("/v1/notifications/{id}/deliveries"),
        None,
    )
    .await;
    d["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["user_id"].as_str().unwrap().to_owned(), i[field].clone()))
        .collect()
}

/// An SQS event of SES events, as the feedback queue hands them to the feedback function.
fn feedback_records(bodies: &[Value]) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({"messageId": format!("m{i}"), "receiptHandle": format!("r{i}"),
                   "body": body.to_string(), "attributes": {}, "messageAttributes": {},
                   "md5OfBody": "", "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notify-FeedbackQueue",
                   "awsRegion": "us-east-1"})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn ses_events_mark_deliveries_delivered_bounced_or_complained_and_move_their_counts() {
    use notify_aws::delivery_tags;
    use notify_core::domain::delivery::DeliveryKey;
    use notify_core::domain::{Channel, NotificationId};
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    for user in ["ada", "bob", "cy"] {
        let (status, body) = call(
            &mut api,
            "PUT",
            &format!("/v1/users/{user}"),
            Some(json!({"email": format!("{user}@example.org")})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
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
        Some(json!({"add": ["ada", "bob", "cy"]})),
    )
    .await;
    let (status, accepted) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"group_id": "all"}, "content": {"subject": "News", "text": "Hello"}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    w.run_queues().await;
    // SES took the tags with each email: the three were sent.
    assert_eq!(w.moto.raw_emails().await.len(), 3);

    let ids = by_user(&mut api, &id, "provider_message_id").await;
    let ses_id = |user: &str| ids[user].as_str().unwrap().to_owned();
    // What SES sends back: `mail.messageId` and the tags the email was sent with.
    let mail = |user: &str, message_id: &str| {
        let key = DeliveryKey {
            notification_id: NotificationId::parse(&id).unwrap(),
            recipient: user.to_owned(),
            channel: Channel::Email,
        };
        let mut tags: serde_json::Map<String, Value> = delivery_tags::tags(&key)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!([v])))
            .collect();
        tags.insert(
            "ses:configuration-set".into(),
            json!(["notify-ConfigurationSet"]),
        );
        json!({"messageId": message_id, "destination": [format!("{user}@example.org")], "tags": tags})
    };
    let delivery = |user: &str, message_id: &str| {
        json!({"eventType": "Delivery", "mail": mail(user, message_id),
               "delivery": {"recipients": [format!("{user}@example.org")]}})
    };
    let bounce = |user: &str| {
        json!({"eventType": "Bounce", "mail": mail(user, &ses_id(user)), "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": format!("{user}@example.org")}]}})
    };
    let complaint = |user: &str| {
        json!({"eventType": "Complaint", "mail": mail(user, &ses_id(user)), "complaint": {
            "complainedRecipients": [{"emailAddress": format!("{user}@example.org")}],
            "complaintFeedbackType": "abuse"}})
    };
    let store = wiring::feedback(&w.config, &w.sdk);
    let r = notify_aws::handlers::feedback_event(
        &store,
        feedback_records(&[
            delivery("ada", &ses_id("ada")),
            // Twice, as SNS and SQS may deliver it: counted once.
            delivery("ada", &ses_id("ada")),
            bounce("bob"),
            // A delivery report after the bounce changes nothing: a bounce is final.
            delivery("bob", &ses_id("bob")),
            // An event about another message to Cy (an earlier send) changes nothing.
            delivery("cy", "0100-some-other-message"),
        ]),
    )
    .await;
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
    assert_eq!(n["status"], "completed", "{n}");
    assert_eq!(
        n["counts"],
        json!({"recipients": 3, "pending": 0, "sent": 1, "failed": 0, "skipped": 0,
               "delivered": 1, "bounced": 1, "complained": 0})
    );
    // Ada complains after the delivery.
    let r =
        notify_aws::handlers::feedback_event(&store, feedback_records(&[complaint("ada")])).await;
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let (_, n) = call(&mut api, "GET", &format!("/v1/notifications/{id}"), None).await;
    assert_eq!(
        n["counts"],
        json!({"recipients": 3, "pending": 0, "sent": 1, "failed": 0, "skipped": 0,
               "delivered": 0, "bounced": 1, "complained": 1})
    );
    let statuses = by_user(&mut api, &id, "status").await;
    let status_of = |user: &str| statuses[user].clone();
    assert_eq!(
        (status_of("ada"), status_of("bob"), status_of("cy")),
        (json!("complained"), json!("bounced"), json!("sent"))
    );
    for (address, reason) in [
        ("ada@example.org", "complaint"),
        ("bob@example.org", "bounce"),
    ] {
        let (status, s) = call(
            &mut api,
            "GET",
            &format!("/v1/suppressions/{address}"),
            None,
        )
        .await;
        assert_eq!((status, &s["reason"]), (200, &json!(reason)), "{s}");
    }
}

#[tokio::test]
async fn sns_opted_out_numbers_are_suppressed_and_a_send_to_one_is_skipped() {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    // moto's SNS lists eight opted-out numbers, +447420500600 and +447420505401 among them.
    // One is on the list already, by hand: it keeps its reason.
    let (status, _) = call(
        &mut api,
        "PUT",
        "/v1/suppressions/%2B447420505401",
        Some(json!({"reason": "manual"})),
    )
    .await;
    assert_eq!(status, 200);
    let consumer = wiring::feedback(&w.config, &w.sdk);
    for _ in 0..2 {
        let r = notify_aws::handlers::feedback_event(
            &consumer,
            feedback_records(&[json!({"chore": "sms_opt_outs"})]),
        )
        .await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    let (_, list) = call(&mut api, "GET", "/v1/suppressions?limit=100", None).await;
    let reasons: std::collections::HashMap<&str, &str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["address"].as_str().unwrap(),
                i["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    assert_eq!(reasons["+447420500600"], "sms_opt_out");
    assert_eq!(reasons["+447420505401"], "manual");

    for (user, phone) in [("stopped", "+447420500600"), ("still", "+821012345678")] {
        let (status, body) = call(
            &mut api,
            "PUT",
            &format!("/v1/users/{user}"),
            Some(json!({"phone": phone})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(
            &mut api,
            "POST",
            "/v1/notifications",
            Some(json!({"to": {"user_id": user}, "channels": ["sms"],
                        "content": {"sms": "Your code is 1234"}})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    w.run_queues().await;
    let sent = w.moto.sms().await;
    assert_eq!(
        sent.len(),
        1,
        "only the number that did not opt out: {sent:?}"
    );
    let (_, page) = call(&mut api, "GET", "/v1/notifications?limit=10", None).await;
    let mut skipped = 0;
    for n in page["items"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        let (_, d) = call(
            &mut api,
            "GET",
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await;
        for item in d["items"].as_array().unwrap() {
            if item["user_id"] == "stopped" {
                assert_eq!(item["status"], "skipped", "{item}");
                assert_eq!(item["error"], "suppressed: sms_opt_out", "{item}");
                skipped += 1;
            }
        }
    }
    assert_eq!(skipped, 1);
}
