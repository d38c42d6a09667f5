//! End to end on AWS, in process: the three Lambda handlers with real AWS SDK clients against
//! moto. The test plays the parts AWS would: it fires the schedule (moto stores schedules but
//! never fires them) and hands queue messages to the handlers as the event source mapping would.

use notify_aws::handlers::{dispatch_event, fanout_event};
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, api_event, event};
use serde_json::{Value, json};

async fn run_queues(w: &AwsWorld) {
    w.run_queues().await;
}

/// What EventBridge Scheduler does when the schedule comes due: put its target input on the
/// target queue.
async fn fire_schedule(w: &AwsWorld, id: &str) {
    let input = w.schedule_input(id).await;
    w.sqs()
        .send_message()
        .queue_url(&w.config.fanout_queue_url)
        .message_body(input)
        .send()
        .await
        .unwrap();
    // ActionAfterCompletion DELETE.
    w.scheduler()
        .delete_schedule()
        .name(id)
        .group_name(&w.config.schedule_group)
        .send()
        .await
        .unwrap();
}

fn in_secs(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn scheduled_email_and_sms_go_through_api_scheduler_fanout_and_dispatch() {
    let mut w = AwsWorld::start().await;
    // Every reserved send gets a schedule here (not only those due in more than 15 minutes).
    w.config.queue_delay_max_secs = 0;
    let mut api = ApiHandler::new(&w);
    assert_eq!(api.call(event("api-put-user.json")).await.status, 200);
    assert_eq!(api.call(event("api-put-template.json")).await.status, 200);

    let body = json!({"to": {"user_id": "ada"}, "channels": ["email", "sms"], "template": {"id": "welcome", "data": {"name": "Ada"}}, "send_at": in_secs(120)});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["status"], "scheduled");
    let id = a.body["id"].as_str().unwrap().to_owned();

    // Stored in DynamoDB, and the schedule exists.
    let item = aws_sdk_dynamodb::Client::new(&w.sdk)
        .get_item()
        .table_name(&w.config.table)
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("N#{id}")),
        )
        .key("SK", aws_sdk_dynamodb::types::AttributeValue::S("N".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the notification is in DynamoDB");
    assert_eq!(item["status"].as_s().unwrap(), "scheduled");
    let schedules = w
        .scheduler()
        .list_schedules()
        .group_name(&w.config.schedule_group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedules
            .schedules()
            .iter()
            .filter_map(|s| s.name())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );

    // Nothing on the queues before it fires.
    run_queues(&w).await;
    assert!(w.moto.raw_emails().await.is_empty());

    // A send_at in the past cannot wait two minutes here: the fanout would ignore an early fire,
    // so move the notification to now first, as a PATCH with a past time does.
    let moved = api
        .call(api_event(
            "api-reschedule-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            Some(json!({"send_at": in_secs(1)})),
        ))
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    fire_schedule(&w, &id).await;
    run_queues(&w).await;

    let emails = w.moto.raw_emails().await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let raw = emails[0]["raw_data"].as_str().unwrap();
    assert!(
        raw.contains("Subject: Welcome, Ada") && raw.contains("Hi Ada"),
        "{raw}"
    );
    assert!(raw.contains(&id), "Message-ID names the notification");
    let sms = w.moto.sms().await;
    assert_eq!(sms.len(), 1);
    assert_eq!(
        (sms[0]["phone_number"].as_str(), sms[0]["message"].as_str()),
        (Some("+821012345678"), Some("Hi Ada"))
    );

    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(n.status, 200);
    assert_eq!(n.body["status"], "completed", "{:?}", n.body);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": 2, "pending": 0, "sent": 2, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );
    let d = api
        .call(api_event(
            "api-get-deliveries.json",
            Some(&format!("/v1/notifications/{id}/deliveries")),
            None,
        ))
        .await;
    let items = d.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["status"] == "sent"
        && i["attempts"] == 1
        && i["provider_message_id"].is_string()));
}

#[tokio::test]
async fn immediate_send_goes_straight_to_the_fanout_queue() {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    let body = json!({"to": {"email": "now@example.org"}, "content": {"subject": "Now", "text": "Right now"}});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    assert_eq!((a.status, a.body["status"].as_str()), (202, Some("queued")));
    assert!(
        a.headers["location"]
            .as_str()
            .unwrap()
            .starts_with("/v1/notifications/ntf_")
    );
    run_queues(&w).await;
    assert_eq!(w.moto.raw_emails().await.len(), 1);
    let id = a.body["id"].as_str().unwrap();
    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(n.body["status"], "completed");
}

#[tokio::test]
async fn cancel_deletes_the_schedule_and_a_late_fire_sends_nothing() {
    let mut w = AwsWorld::start().await;
    // Every reserved send gets a schedule here (not only those due in more than 15 minutes).
    w.config.queue_delay_max_secs = 0;
    let mut api = ApiHandler::new(&w);
    let mut e = event("api-post-notification-scheduled.json");
    let mut body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
    body["send_at"] = json!(in_secs(600));
    e["body"] = json!(body.to_string());
    let a = api.call(e).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let input = w.schedule_input(&id).await;

    let c = api
        .call(api_event(
            "api-cancel-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(
        (c.status, c.body["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert!(
        w.scheduler()
            .get_schedule()
            .name(&id)
            .group_name(&w.config.schedule_group)
            .send()
            .await
            .is_err(),
        "schedule deleted"
    );

    // Had the schedule fired anyway (deleted a moment too late), nothing is sent.
    w.sqs()
        .send_message()
        .queue_url(&w.config.fanout_queue_url)
        .message_body(input)
        .send()
        .await
        .unwrap();
    run_queues(&w).await;
    assert!(w.moto.raw_emails().await.is_empty());
}

#[tokio::test]
async fn a_dispatch_message_delivered_twice_sends_once_and_a_schedule_fired_twice_too() {
    let mut w = AwsWorld::start().await;
    // Every reserved send gets a schedule here (not only those due in more than 15 minutes).
    w.config.queue_delay_max_secs = 0;
    let mut api = ApiHandler::new(&w);
    let body = json!({"to": {"email": "twice@example.org"}, "content": {"subject": "Once", "text": "Only once"}, "send_at": in_secs(1)});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    // Past send_at (a fire before it would be held back on the queue until then).
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let input = w.schedule_input(&id).await;
    for _ in 0..2 {
        w.sqs()
            .send_message()
            .queue_url(&w.config.fanout_queue_url)
            .message_body(&input)
            .send()
            .await
            .unwrap();
    }
    let fanout = wiring::fanout(&w.config, &w.sdk);
    for _ in 0..2 {
        let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
        let r = fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
        w.settle(&w.config.fanout_queue_url, &e, &r).await;
    }
    // Two dispatch messages for one delivery (one per fire); deliver each twice.
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(e.records.len(), 2);
    // In one batch the two run in parallel: one claims the delivery, the other finds it busy
    // and is reported for redelivery, which then finds it sent.
    let first = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
    assert!(first.batch_item_failures.len() <= 1, "{first:?}");
    let again = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(w.moto.raw_emails().await.len(), 1, "sent once");
    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(
        n.body["counts"],
        json!({"recipients": 1, "pending": 0, "sent": 1, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );
}

#[tokio::test]
async fn a_failed_dispatch_is_reported_alone_for_redelivery() {
    let w = AwsWorld::start().await;
    let mut cfg = w.config.clone();
    cfg.email_from = "x@unverified.test".into();
    let mut api = ApiHandler::new(&w);
    let ok = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(json!({"to": {"phone": "+14155550123"}, "channels": ["sms"], "content": {"sms": "hi"}})),
        ))
        .await;
    let bad = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(
                json!({"to": {"email": "z@example.org"}, "content": {"subject": "s", "text": "t"}}),
            ),
        ))
        .await;
    let fanout = wiring::fanout(&w.config, &w.sdk);
    for _ in 0..2 {
        let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
        let r = fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
        w.settle(&w.config.fanout_queue_url, &e, &r).await;
    }
    // An unverified sender: SES refuses for good, the delivery is failed, the message is done.
    let dispatch = wiring::dispatch(&cfg, &w.sdk).unwrap();
    let mut e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(e.records.len(), 2);
    let mut junk = e.records[0].clone();
    junk.message_id = Some("junk".into());
    junk.body = Some("not a job".into());
    e.records.push(junk);
    let r = dispatch_event(&dispatch, e, notify_tests::aws::dispatch_deadline()).await;
    let failed: Vec<_> = r
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["junk"], "only the unreadable message goes back");
    let get = |id: &str| {
        api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        )
    };
    assert_eq!(
        api.call(get(ok.body["id"].as_str().unwrap())).await.body["status"],
        "completed"
    );
    let b = api.call(get(bad.body["id"].as_str().unwrap())).await;
    assert_eq!(b.body["status"], "failed");
    let d = api
        .call(api_event(
            "api-get-deliveries.json",
            Some(&format!(
                "/v1/notifications/{}/deliveries",
                bad.body["id"].as_str().unwrap()
            )),
            None,
        ))
        .await;
    assert!(
        d.body["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("SES 400"),
        "{:?}",
        d.body
    );
}

#[tokio::test]
async fn every_file_in_events_goes_through_its_handler() {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    let fanout = wiring::fanout(&w.config, &w.sdk);
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(notify_tests::repo_root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Order matters for a meaningful run: the user and template first, deletes last.
    let rank = |n: &str| match n {
        "api-put-user.json" | "api-put-group.json" => 0,
        "api-put-template.json" | "api-subscribe.json" => 1,
        "api-unsubscribe.json" => 3,
        n if n.contains("delete") => 4,
        _ => 2,
    };
    names.sort_by_key(|n| rank(n));
    let mut seen = 0;
    for name in &names {
        let e = event(name);
        if name.starts_with("api-") {
            let mut e = e;
            if name.contains("inbox") {
                // An end-user route: the file's placeholder becomes a token minted now.
                let minted = api.call(event("api-post-user-token.json")).await;
                e["headers"]["authorization"] =
                    json!(format!("Bearer {}", minted.body["token"].as_str().unwrap()));
            }
            if name == "api-post-notification-scheduled.json" {
                // The file's send_at is a fixed date; keep it within the 365-day window.
                let mut body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
                body["send_at"] = json!(in_secs(3600));
                e["body"] = json!(body.to_string());
            }
            let a = api.call(e).await;
            let ok = match name.as_str() {
                // These name a notification id that does not exist here.
                "api-get-notification.json"
                | "api-get-deliveries.json"
                | "api-get-delivery-message.json"
                | "api-cancel-notification.json"
                | "api-reschedule-notification.json"
                | "api-retry-notification.json" => a.status == 404,
                _ => (200..300).contains(&a.status),
            };
            assert!(ok, "{name}: {} {:?}", a.status, a.body);
        } else if name.starts_with("sqs-fanout") {
            let r = fanout_event(
                &fanout,
                serde_json::from_value(e).unwrap(),
                w.config.fanout_max_receives,
            )
            .await;
            assert!(
                r.batch_item_failures.is_empty(),
                "{name}: an unknown notification is ignored, not retried"
            );
        } else if name.starts_with("sqs-dispatch") {
            let r = dispatch_event(
                &dispatch,
                serde_json::from_value(e).unwrap(),
                notify_tests::aws::dispatch_deadline(),
            )
            .await;
            assert!(r.batch_item_failures.is_empty(), "{name}");
        } else if name.starts_with("sqs-feedback") {
            let store = wiring::feedback(&w.config, &w.sdk);
            let r =
                notify_aws::handlers::feedback_event(&store, serde_json::from_value(e).unwrap())
                    .await;
            assert!(r.batch_item_failures.is_empty(), "{name}: {r:?}");
            // The bounce and the complaint in the file are on the list; the delivery changes
            // nothing; the SMS opt-out chore copies SNS's list (moto's has +447420500600).
            let (present, absent): (&[&str], &[&str]) = if name.contains("sms-opt-outs") {
                (&["+447420500600"], &[])
            } else {
                (
                    &["angry@example.com", "gone@example.com"],
                    &["ada@example.com"],
                )
            };
            let listed = api
                .call(api_event(
                    "api-get-user.json",
                    Some("/v1/suppressions"),
                    None,
                ))
                .await;
            let addresses: Vec<&str> = listed.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["address"].as_str().unwrap())
                .collect();
            for address in present {
                assert!(addresses.contains(address), "{name}: {addresses:?}");
            }
            for address in absent {
                assert!(!addresses.contains(address), "{name}: {addresses:?}");
            }
        } else if name.starts_with("sqs-webhook") {
            // The file's endpoint does not exist here: its events are dropped, the job done.
            let webhooks = wiring::webhook_consumer(&w.config, &w.sdk);
            let r =
                notify_aws::handlers::webhook_event(&webhooks, serde_json::from_value(e).unwrap())
                    .await;
            assert!(r.batch_item_failures.is_empty(), "{name}: {r:?}");
        } else {
            panic!("{name}: no handler takes this event; add it here");
        }
        seen += 1;
    }
    assert!(seen >= 31, "{seen} events");
}
