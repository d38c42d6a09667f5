//! Every AWS adapter over the real AWS wire protocol, against moto in server mode.

use jiff::{SignedDuration, Timestamp};
use notify_aws::email::SesEmail;
use notify_aws::queues::SqsQueues;
use notify_aws::scheduler::EventBridgeScheduler;
use notify_aws::sms::SnsSms;
use notify_aws::store::DynamoStore;
use notify_core::domain::delivery::{DeliveryKey, Recipient};
use notify_core::domain::template::Parts;
use notify_core::domain::{Channel, EmailAddress, NotificationId, PhoneNumber};
use notify_core::jobs::{DispatchItem, DispatchJob, FanoutJob};
use notify_core::ports::{EmailSender, OutgoingSms, Queues, Scheduler, SendErrorKind, SmsSender};
use notify_core::services::message::build_email;
use notify_tests::aws::AwsWorld;
use serde_json::Value;

#[tokio::test]
async fn dynamodb_store_meets_the_store_contract() {
    let w = AwsWorld::start().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&w.sdk), &w.config.table);
    notify_core::contract::run_all(&store).await;
    notify_core::contract::run_job_claims(&store).await;
}

#[tokio::test]
async fn idempotency_records_carry_a_ttl() {
    let w = AwsWorld::start().await;
    let ddb = aws_sdk_dynamodb::Client::new(&w.sdk);
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&w.config.table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("ttl")
    );
    // The contract suite wrote a record; its item has the TTL attribute in seconds.
    let store = DynamoStore::new(ddb.clone(), &w.config.table);
    notify_core::contract::run_all(&store).await;
    let item = ddb
        .get_item()
        .table_name(&w.config.table)
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S("I#contract-key".into()),
        )
        .key("SK", aws_sdk_dynamodb::types::AttributeValue::S("I".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let ttl: i64 = item["ttl"].as_n().unwrap().parse().unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(ttl, expires / 1000);
}

fn dispatch_job(i: usize) -> DispatchJob {
    DispatchJob {
        notification_id: NotificationId::generate(Timestamp::now()),
        key: None,
        items: vec![DispatchItem {
            recipient: Recipient::email(EmailAddress::parse(&format!("r{i}@example.com")).unwrap()),
            channels: vec![Channel::Email],
        }],
    }
}

#[tokio::test]
async fn sqs_sends_dispatch_jobs_ten_per_batch_and_fanout_jobs() {
    let w = AwsWorld::start().await;
    let queues = SqsQueues::new(
        w.sqs(),
        w.config.fanout_queue_url.clone(),
        w.config.dispatch_queue_url.clone(),
        w.config.webhook_queue_url.clone(),
    );
    let jobs: Vec<DispatchJob> = (0..25).map(dispatch_job).collect();
    queues.send_dispatch(&jobs).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let event = w.receive_event(&w.config.dispatch_queue_url, 10).await;
        if event.records.is_empty() {
            break;
        }
        for r in &event.records {
            got.push(serde_json::from_str::<DispatchJob>(r.body.as_deref().unwrap()).unwrap());
        }
        w.settle(&w.config.dispatch_queue_url, &event, &Default::default())
            .await;
    }
    got.sort_by(|a, b| a.items[0].recipient.key.cmp(&b.items[0].recipient.key));
    let mut want = jobs.clone();
    want.sort_by(|a, b| a.items[0].recipient.key.cmp(&b.items[0].recipient.key));
    assert_eq!(got, want);

    let job = FanoutJob {
        cursor: Some("c1".into()),
        ..FanoutJob::start(NotificationId::generate(Timestamp::now()))
    };
    queues.send_fanout(&job).await.unwrap();
    let event = w.receive_event(&w.config.fanout_queue_url, 10).await;
    assert_eq!(
        serde_json::from_str::<FanoutJob>(event.records[0].body.as_deref().unwrap()).unwrap(),
        job
    );
}

#[tokio::test]
async fn scheduler_creates_moves_and_deletes_one_shot_schedules() {
    let w = AwsWorld::start().await;
    let queues = std::sync::Arc::new(SqsQueues::new(
        w.sqs(),
        w.config.fanout_queue_url.clone(),
        w.config.dispatch_queue_url.clone(),
        w.config.webhook_queue_url.clone(),
    ));
    let s = EventBridgeScheduler::new(
        w.scheduler(),
        queues,
        std::time::Duration::from_secs(900),
        w.config.schedule_group.clone(),
        w.config.fanout_queue_arn.clone(),
        w.config.scheduler_role_arn.clone(),
        w.config.scheduler_dlq_arn.clone(),
    );
    let id = NotificationId::generate(Timestamp::now());
    let at: Timestamp = "2027-01-02T03:04:05.250+09:00".parse().unwrap();
    s.schedule(&id, at).await.unwrap();
    let got = w
        .scheduler()
        .get_schedule()
        .name(id.as_str())
        .group_name(&w.config.schedule_group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.schedule_expression(),
        Some("at(2027-01-01T18:03:00)"),
        "the minute before send_at's"
    );
    assert_eq!(got.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(got.flexible_time_window().unwrap().mode().as_str(), "OFF");
    let target = got.target().unwrap();
    assert_eq!(target.arn(), w.config.fanout_queue_arn);
    assert_eq!(target.role_arn(), w.config.scheduler_role_arn);
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"notification_id": id.as_str()}));
    assert_eq!(
        target.dead_letter_config().unwrap().arn(),
        w.config.scheduler_dlq_arn.as_deref()
    );
    assert!(target.retry_policy().is_some());

    // Scheduling again (a reschedule, or a replayed request) moves it.
    s.schedule(&id, at + SignedDuration::from_hours(1))
        .await
        .unwrap();
    let got = w
        .scheduler()
        .get_schedule()
        .name(id.as_str())
        .group_name(&w.config.schedule_group)
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("at(2027-01-01T19:03:00)"));

    // Due within SQS's 15 minutes: no schedule (the old one goes), a delayed fanout job instead.
    s.schedule(&id, Timestamp::now() + SignedDuration::from_secs(3))
        .await
        .unwrap();
    let gone = w
        .scheduler()
        .get_schedule()
        .name(id.as_str())
        .group_name(&w.config.schedule_group)
        .send()
        .await;
    assert!(gone.is_err(), "a near send has no schedule");
    assert!(
        w.receive_event(&w.config.fanout_queue_url, 10)
            .await
            .records
            .is_empty(),
        "held back by DelaySeconds"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let event = w.receive_event(&w.config.fanout_queue_url, 10).await;
    assert_eq!(
        serde_json::from_str::<FanoutJob>(event.records[0].body.as_deref().unwrap()).unwrap(),
        FanoutJob::start(id.clone())
    );
    s.schedule(&id, at).await.unwrap();

    s.cancel(&id).await.unwrap();
    let gone = w
        .scheduler()
        .get_schedule()
        .name(id.as_str())
        .group_name(&w.config.schedule_group)
        .send()
        .await;
    assert!(gone.is_err(), "deleted");
    s.cancel(&id).await.unwrap();
}

fn key() -> DeliveryKey {
    DeliveryKey {
        notification_id: NotificationId::generate(Timestamp::now()),
        recipient: "u1".into(),
        channel: Channel::Email,
    }
}

#[tokio::test]
async fn ses_sends_the_raw_mime_message() {
    let w = AwsWorld::start().await;
    let ses = SesEmail::new(aws_sdk_sesv2::Client::new(&w.sdk), None);
    let parts = Parts {
        subject: Some("Hello from SES".into()),
        text: Some("plain body".into()),
        html: Some("<p>html body</p>".into()),
        sms: None,
        ..Default::default()
    };
    let email = build_email(
        &EmailAddress::parse("notify@example.com").unwrap(),
        &EmailAddress::parse("ada@example.org").unwrap(),
        &key(),
        &parts,
        Some("https://notify.example/u/t0k.s1g"),
    )
    .unwrap();
    let id = ses.send(&email).await.unwrap();
    assert!(!id.is_empty());
    let raw = w.moto.raw_emails().await;
    assert_eq!(raw.len(), 1);
    let data = raw[0]["raw_data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Hello from SES")
            && data.contains("plain body")
            && data.contains("html body"),
        "{data}"
    );
    assert!(
        data.contains(&email.message_id),
        "the same Message-ID as built"
    );
    // The one-click unsubscribe headers of RFC 8058 reach SES as built.
    assert!(
        data.contains("List-Unsubscribe: <https://notify.example/u/t0k.s1g>\r\n")
            && data.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "{data}"
    );
    assert_eq!(raw[0]["source"], "notify@example.com");
    // moto lists the To header and the envelope destination both; either way, only Ada.
    assert!(
        raw[0]["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d == "ada@example.org"),
        "{raw:?}"
    );
    assert_eq!(raw[0]["id"], id.as_str());
}

#[tokio::test]
async fn ses_refusing_an_unverified_sender_is_a_permanent_error() {
    let w = AwsWorld::start().await;
    let ses = SesEmail::new(aws_sdk_sesv2::Client::new(&w.sdk), None);
    let parts = Parts {
        subject: Some("s".into()),
        text: Some("t".into()),
        ..Default::default()
    };
    let email = build_email(
        &EmailAddress::parse("someone@unverified.test").unwrap(),
        &EmailAddress::parse("ada@example.org").unwrap(),
        &key(),
        &parts,
        None,
    )
    .unwrap();
    let e = ses.send(&email).await.unwrap_err();
    assert_eq!(e.kind, SendErrorKind::Permanent, "{e}");
    assert!(e.message.contains("SES 400"), "{e}");
}

#[tokio::test]
async fn sns_publishes_sms_to_an_e164_number() {
    let w = AwsWorld::start().await;
    let sns = SnsSms::new(aws_sdk_sns::Client::new(&w.sdk));
    let sms = OutgoingSms {
        to: PhoneNumber::parse("+821012345678").unwrap(),
        body: "Your code is 123456".into(),
        message_id: "m1".into(),
    };
    let id = sns.send(&sms).await.unwrap();
    assert!(!id.is_empty());
    let sent = w.moto.sms().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["phone_number"], "+821012345678");
    assert_eq!(sent[0]["message"], "Your code is 123456");
    assert_eq!(sent[0]["message_id"], id.as_str());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    let sdk =
        notify_tests::aws::sdk_config(&format!("http://127.0.0.1:{}", notify_tests::free_port()))
            .await;
    let sns = SnsSms::new(aws_sdk_sns::Client::new(&sdk));
    let sms = OutgoingSms {
        to: PhoneNumber::parse("+821012345678").unwrap(),
        body: "x".into(),
        message_id: "m".into(),
    };
    let e = sns.send(&sms).await.unwrap_err();
    assert_eq!(e.kind, SendErrorKind::Transient, "{e}");
}
