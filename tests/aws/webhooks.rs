//! Outgoing webhooks on AWS: events from dispatch and from SES feedback go through the webhook
//! queue to the webhooks function, which posts them signed; the receiver checks each with the
//! Standard Webhooks reference library.

use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld};
use serde_json::{Value, json};

use crate::feedback::{by_user, feedback_records};
use crate::suppressions::call;

#[tokio::test]
async fn webhooks_on_aws_post_signed_events_from_dispatch_and_from_ses_feedback() {
    use notify_aws::delivery_tags;
    use notify_core::domain::delivery::DeliveryKey;
    use notify_core::domain::{Channel, NotificationId};
    let receiver = notify_tests::WebhookReceiver::start().await;
    let mut w = AwsWorld::start().await;
    // The receiver is on loopback: allowed here, as NOTIFY_WEBHOOK_ALLOW_PRIVATE=true does.
    w.config.webhook_allow_private = true;
    let mut api = ApiHandler::new(&w);
    let (status, made) = call(
        &mut api,
        "POST",
        "/v1/webhooks",
        Some(json!({"url": receiver.url(),
                    "events": ["delivery.sent", "notification.completed", "delivery.bounced"]})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    receiver
        .configure(made["secret"].as_str().unwrap(), 0)
        .await;
    call(
        &mut api,
        "PUT",
        "/v1/users/ada",
        Some(json!({"email": "ada@example.org"})),
    )
    .await;
    let (status, accepted) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"user_id": "ada"}, "content": {"subject": "Hi", "text": "Hello"}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    w.run_queues().await;

    // The webhooks function: what is on the webhook queue, posted.
    let webhooks = wiring::webhook_consumer(&w.config, &w.sdk);
    let run_webhooks = || async {
        let e = w.receive_event(&w.config.webhook_queue_url, 10).await;
        let r = notify_aws::handlers::webhook_event(&webhooks, e.clone()).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        w.settle(&w.config.webhook_queue_url, &e, &r).await;
    };
    run_webhooks().await;
    let got = receiver
        .wait_for(std::time::Duration::from_secs(10), |got| got.len() >= 2)
        .await;
    let types: Vec<&str> = got
        .iter()
        .map(|r| r["payload"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        ["delivery.sent", "notification.completed"],
        "{got:?}"
    );
    assert!(got.iter().all(|r| r["verified"] == true), "{got:?}");

    // A bounce reported by SES: the feedback function queues delivery.bounced.
    let ses_id = by_user(&mut api, &id, "provider_message_id").await["ada"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = DeliveryKey {
        notification_id: NotificationId::parse(&id).unwrap(),
        recipient: "ada".into(),
        channel: Channel::Email,
    };
    let tags: serde_json::Map<String, Value> = delivery_tags::tags(&key)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!([v])))
        .collect();
    let bounce = json!({"eventType": "Bounce",
        "mail": {"messageId": ses_id, "destination": ["ada@example.org"], "tags": tags},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "ada@example.org"}]}});
    let consumer = wiring::feedback(&w.config, &w.sdk);
    let r = notify_aws::handlers::feedback_event(&consumer, feedback_records(&[bounce])).await;
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    run_webhooks().await;
    let got = receiver
        .wait_for(std::time::Duration::from_secs(10), |got| got.len() >= 3)
        .await;
    assert_eq!(got[2]["payload"]["type"], "delivery.bounced", "{got:?}");
    assert_eq!(
        got[2]["payload"]["data"]["provider_message_id"],
        ses_id.as_str()
    );
    assert_eq!(got[2]["verified"], true);
}
