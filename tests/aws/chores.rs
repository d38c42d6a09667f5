//! The chores on the fanout queue, on AWS: the sweep fires a reserved send whose trigger was
//! lost and finishes a send left `sending`; deleting a group answers at once and its
//! memberships are purged in the background.

use notify_core::ports::{DeliveryStore, GroupStore, NotificationStore};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use notify_aws::store::DynamoStore;
use notify_aws::wiring;
use notify_core::domain::delivery::{Delivery, Recipient};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::notification::{Content, Notification, Status, Target};
use notify_core::domain::template::Parts;
use notify_core::domain::{Channel, EmailAddress, GroupId, NotificationId, UserId};
use notify_core::ports::InsertOutcome;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use notify_tests::lambdas::{LambdaSettings, Lambdas};
use serde_json::json;

fn notification(to: &str, status: Status, send_at: Timestamp) -> Notification {
    let parts = Parts {
        subject: Some("Swept".into()),
        text: Some("Found and sent".into()),
        html: None,
        sms: None,
        ..Default::default()
    };
    Notification {
        id: NotificationId::generate(Timestamp::now()),
        to: Target::Email(EmailAddress::parse(to).unwrap()),
        channels: vec![Channel::Email],
        content: Content::Inline(parts),
        send_at,
        created_at: send_at,
        status,
        category: None,
    }
}

async fn status_of(api: &mut ApiHandler, id: &NotificationId) -> String {
    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    n.body["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_fires_a_reserved_send_whose_trigger_was_lost_and_finishes_one_left_sending() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    })
    .await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&w.direct), &w.config.table);
    let mut api = ApiHandler::new(&w);

    // Reserved for ten minutes ago, and no schedule or queued job exists for it.
    let lost = notification(
        "lost@example.org",
        Status::Scheduled,
        Timestamp::now() - SignedDuration::from_mins(10),
    );
    assert!(matches!(
        store
            .insert_notification(&lost, None, Timestamp::now())
            .await
            .unwrap(),
        InsertOutcome::Inserted
    ));
    // Fanned out, nothing pending, but its final status was never written.
    let stuck = notification(
        "stuck@example.org",
        Status::Queued,
        Timestamp::now() - SignedDuration::from_mins(10),
    );
    store
        .insert_notification(&stuck, None, Timestamp::now())
        .await
        .unwrap();
    assert!(
        store
            .transition(&stuck.id, &[Status::Queued], Status::Sending)
            .await
            .unwrap()
    );
    let recipient = Recipient::email(EmailAddress::parse("stuck@example.org").unwrap());
    store
        .insert_deliveries(
            &stuck.id,
            "",
            &FannedOutPage::default(),
            &[Channel::Email],
            &[Delivery::skipped(
                &stuck.id,
                &recipient,
                Channel::Email,
                "opted out",
            )],
        )
        .await
        .unwrap();
    store.mark_fanned_out(&stuck.id, None).await.unwrap();
    // Reserved for later: the sweep leaves it alone.
    let later = notification(
        "later@example.org",
        Status::Scheduled,
        Timestamp::now() + SignedDuration::from_hours(1),
    );
    store
        .insert_notification(&later, None, Timestamp::now())
        .await
        .unwrap();

    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings::default(),
    );
    // What the recurring schedule of template.yaml puts on the fanout queue.
    w.sqs()
        .send_message()
        .queue_url(&w.config.fanout_queue_url)
        .message_body(r#"{"chore": "sweep"}"#)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(&mut api, &lost.id).await != "completed"
        || status_of(&mut api, &stuck.id).await != "completed"
    {
        assert!(Instant::now() < deadline, "the sweep did not move them");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(status_of(&mut api, &later.id).await, "scheduled");
    tokio::time::sleep(Duration::from_secs(1)).await;
    lambdas.stop().await;
    let emails: Vec<String> = w
        .moto
        .raw_emails()
        .await
        .iter()
        .map(|e| e["destinations"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(emails, ["lost@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_big_group_answers_at_once_and_its_memberships_go_in_the_background() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    })
    .await;
    let mut api = ApiHandler::new(&w);
    const MEMBERS: usize = 1500;
    assert_eq!(
        api.call(api_event(
            "api-put-group.json",
            Some("/v1/groups/big"),
            Some(json!({"name": "Big"}))
        ))
        .await
        .status,
        200
    );
    // Memberships straight into the table (the API adds only existing users, 1000 a call).
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&w.direct), &w.config.table);
    let ids: Vec<UserId> = (0..MEMBERS)
        .map(|i| UserId::parse(&format!("b{i:04}")).unwrap())
        .collect();
    let group = GroupId::parse("big").unwrap();
    assert_eq!(
        store.add_members(&group, &ids).await.unwrap(),
        MEMBERS as u64
    );

    let started = Instant::now();
    let d = api
        .call(api_event(
            "api-delete-group.json",
            Some("/v1/groups/big"),
            None,
        ))
        .await;
    assert_eq!(d.status, 204, "{:?}", d.body);
    eprintln!(
        "DELETE of a {MEMBERS}-member group answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        api.call(api_event(
            "api-get-group.json",
            Some("/v1/groups/big"),
            None
        ))
        .await
        .status,
        404,
        "gone at once"
    );
    let send = json!({"to": {"group_id": "big"}, "content": {"subject": "x", "text": "y"}});
    assert_eq!(
        api.call(api_event(
            "api-post-notification-now.json",
            None,
            Some(send)
        ))
        .await
        .status,
        422,
        "no sends to it"
    );
    let again = api
        .call(api_event(
            "api-put-group.json",
            Some("/v1/groups/big"),
            Some(json!({"name": "Big again"})),
        ))
        .await;
    assert_eq!(
        again.status, 409,
        "not created again while its members are purged: {:?}",
        again.body
    );

    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let put = api
            .call(api_event(
                "api-put-group.json",
                Some("/v1/groups/big"),
                Some(json!({"name": "Big again"})),
            ))
            .await;
        if put.status == 200 {
            assert_eq!(
                put.body["member_count"], 0,
                "a new, empty group: {:?}",
                put.body
            );
            break;
        }
        assert!(Instant::now() < deadline, "the purge did not finish");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lambdas.stop().await;
    let members = api
        .call(api_event(
            "api-list-group-members.json",
            Some("/v1/groups/big/members"),
            None,
        ))
        .await;
    assert_eq!(members.body["items"], json!([]), "no old membership left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_job_failing_on_its_last_receive_is_put_back_for_later_not_dead_lettered() {
    let w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    })
    .await;
    let proxy = w.proxy.as_ref().unwrap();
    let id = NotificationId::generate(Timestamp::now());
    let body = json!({"notification_id": id}).to_string();
    w.sqs()
        .send_message()
        .queue_url(&w.config.fanout_queue_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let mut event = w.receive_event(&w.config.fanout_queue_url, 1).await;
    // DynamoDB fails every call, and this is the queue's last receive of the job.
    proxy.set(json!({"dynamodb.internal_error": 1.0})).await;
    let fanout = wiring::fanout(&w.config, &w.sdk);
    event.records[0].attributes.insert(
        "ApproximateReceiveCount".into(),
        w.config.fanout_max_receives.to_string(),
    );
    let response =
        notify_aws::handlers::fanout_event(&fanout, event.clone(), w.config.fanout_max_receives)
            .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "not reported, so not dead-lettered: {response:?}"
    );
    proxy.set(json!({"dynamodb.internal_error": 0.0})).await;
    w.settle(&w.config.fanout_queue_url, &event, &response)
        .await;
    let attrs = w
        .sqs()
        .get_queue_attributes()
        .queue_url(&w.config.fanout_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = &attrs.attributes().unwrap()
        [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed];
    assert_eq!(delayed, "1", "a fresh copy waits 15 minutes on the queue");
}
