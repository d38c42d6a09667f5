//! Provider feedback on AWS: SES events (through the feedback queue) mark deliveries
//! `delivered`, `bounced` or `complained` and suppress addresses; SNS's opted-out numbers are
//! copied onto the suppression list when the stack's schedule asks.

use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld};
use serde_json::{Value, json};

use crate::suppressions::call;

/// One field of each delivery of notification `id`, by user.
pub(crate) async fn by_user(
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
pub(crate) fn feedback_records(bodies: &[Value]) -> aws_lambda_events::sqs::SqsEvent {
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
