//! A group page's dispatch job claimed whole, on DynamoDB (moto): a worker killed in the middle
//! of a job leaves its lease to run out, and the worker that takes the job over sends only what
//! was not recorded and counts the whole job, the dead worker's outcomes included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use notify_aws::handlers::dispatch_event;
use notify_aws::store::DynamoStore;
use notify_aws::wiring;
use notify_core::domain::delivery::{Delivery, DeliveryStatus, Recipient};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::job_claim::{JobClaim, JobTotals};
use notify_core::domain::notification::{Content, Notification, Status, Target};
use notify_core::domain::template::Parts;
use notify_core::domain::{Channel, EmailAddress, GroupId, NotificationId};
use notify_core::jobs::{DispatchItem, DispatchJob};
use notify_core::memory::{FakeClock, RecordingEmail, RecordingSms};
use notify_core::ports::{DeliveryStore, EmailSender, NotificationStore, OutgoingEmail, SendError};
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_tests::aws::AwsWorld;

/// Sends the first `answer` emails, then takes the next one and never answers: the provider
/// call in flight when the invocation is killed.
struct DiesMidSend {
    answer: usize,
    taken: Mutex<Vec<String>>,
}

#[async_trait]
impl EmailSender for DiesMidSend {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let n = {
            let mut taken = self.taken.lock().unwrap();
            taken.push(email.to.as_str().to_owned());
            taken.len()
        };
        if n > self.answer {
            std::future::pending::<()>().await;
        }
        Ok(email.message_id.clone())
    }
}

/// The world's table, as the functions see it.
fn store(w: &AwsWorld) -> Arc<DynamoStore> {
    Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&w.sdk),
        &w.config.table,
    ))
}

/// A group send of five emails, fanned out as one page whose job is `#0`.
async fn five_email_group_send(store: &DynamoStore, now: Timestamp) -> (Notification, DispatchJob) {
    let n = Notification {
        id: NotificationId::generate(now),
        to: Target::GroupId(GroupId::parse("everyone").unwrap()),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("Hello".into()),
            text: Some("Once each".into()),
            ..Default::default()
        }),
        send_at: now,
        created_at: now,
        status: Status::Sending,
        category: None,
    };
    store.insert_notification(&n, None, now).await.unwrap();
    let recipients: Vec<Recipient> = (0..5)
        .map(|i| Recipient::email(EmailAddress::parse(&format!("t{i}@example.org")).unwrap()))
        .collect();
    let rows: Vec<Delivery> = recipients
        .iter()
        .map(|r| Delivery::pending(&n.id, r, Channel::Email))
        .collect();
    let record = FannedOutPage::default();
    assert!(
        store
            .insert_deliveries(&n.id, "", &record, &n.channels, &rows)
            .await
            .unwrap()
    );
    store.mark_fanned_out(&n.id, None).await.unwrap();
    let job = DispatchJob {
        notification_id: n.id.clone(),
        key: Some("#0".into()),
        items: recipients
            .iter()
            .map(|r| DispatchItem {
                recipient: r.clone(),
                channels: vec![Channel::Email],
            })
            .collect(),
    };
    (n, job)
}

#[tokio::test]
async fn a_job_taken_over_after_its_worker_died_sends_the_rest_once_and_counts_the_whole_job() {
    let w = AwsWorld::start().await;
    let store = store(&w);
    let now = Timestamp::now();
    let clock = Arc::new(FakeClock::new(now));
    let (n, job) = five_email_group_send(&store, now).await;
    let settings = DispatchSettings::new(EmailAddress::parse("news@example.com").unwrap());
    let lease = settings.lease;

    // The first worker sends two, is in the provider's hands with the third, and is killed.
    let dying = Arc::new(DiesMidSend {
        answer: 2,
        taken: Mutex::default(),
    });
    let first = Dispatch::new(
        store.clone(),
        dying.clone(),
        Arc::new(RecordingSms::default()),
        clock.clone(),
        settings.clone(),
    );
    let killed = tokio::time::timeout(std::time::Duration::from_secs(5), first.handle(&job)).await;
    assert!(
        killed.is_err(),
        "the first worker should hang in its third send"
    );
    assert_eq!(dying.taken.lock().unwrap().len(), 3);
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (0, 5), "{counts:?}");

    // Its message comes back while the lease runs: the job is busy.
    let email = Arc::new(RecordingEmail::default());
    let second = Dispatch::new(
        store.clone(),
        email.clone(),
        Arc::new(RecordingSms::default()),
        clock.clone(),
        settings,
    );
    let report = second.handle(&job).await.unwrap();
    assert!(report.retry && report.sent == 0, "{report:?}");

    // After the lease, the job is taken over: the two recorded sends are found done, the one
    // cut off is sent again (no provider takes an idempotency key), and the rest once.
    clock.advance(lease + SignedDuration::from_secs(1));
    let report = second.handle(&job).await.unwrap();
    assert_eq!((report.already_done, report.sent), (2, 3), "{report:?}");
    let again: Vec<String> = email
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.to.as_str().to_owned())
        .collect();
    assert_eq!(
        again,
        ["t2@example.org", "t3@example.org", "t4@example.org"]
    );
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!(
        (counts.recipients, counts.sent, counts.pending),
        (5, 5, 0),
        "{counts:?}"
    );
    let finished = store.get_notification(&n.id).await.unwrap().unwrap();
    assert_eq!(finished.status, Status::Completed);
    let listed = store.list_deliveries(&n.id, 10, None).await.unwrap().items;
    assert_eq!(listed.len(), 5);
    assert!(
        listed
            .iter()
            .all(|d| d.status.was_sent() && d.provider_message_id.is_some())
    );

    // The job is done: a late copy of its message sends nothing.
    let report = second.handle(&job).await.unwrap();
    assert_eq!((report.already_done, report.sent), (5, 0), "{report:?}");
}

#[tokio::test]
async fn a_worker_killed_after_its_commit_and_before_the_finish_leaves_the_finish_to_the_copy_that_comes_back()
 {
    let w = AwsWorld::start().await;
    let store = store(&w);
    let now = Timestamp::now();
    let (n, job) = five_email_group_send(&store, now).await;

    // The first worker's steps, as its store calls: it claims the job, sends and records every
    // email, commits the job done, and is killed before it finishes the notification.
    let claims = store.job_claims().unwrap();
    let JobClaim::Claimed(lease) = claims
        .claim_job(&n.id, "#0", now, now + SignedDuration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("the first claim should take the job");
    };
    let mut totals = JobTotals::default();
    for item in &job.items {
        let mut row = Delivery::pending(&n.id, &item.recipient, Channel::Email);
        row.attempts = 1;
        row.status = DeliveryStatus::Sent;
        row.sent_at = Some(now);
        row.provider_message_id = Some(format!("m-{}", item.recipient.key));
        assert!(claims.put_job_delivery(&row).await.unwrap());
        totals.add(row.status);
    }
    assert!(
        claims
            .commit_job(&n.id, "#0", &lease, totals, true)
            .await
            .unwrap()
    );
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (5, 0), "{counts:?}");
    let stuck = store.get_notification(&n.id).await.unwrap().unwrap();
    assert_eq!(stuck.status, Status::Sending);

    // Its message comes back after the visibility timeout: the job is done, nothing is sent
    // again, and the notification is finished.
    let email = Arc::new(RecordingEmail::default());
    let again = Dispatch::new(
        store.clone(),
        email.clone(),
        Arc::new(RecordingSms::default()),
        Arc::new(FakeClock::new(now + SignedDuration::from_secs(120))),
        DispatchSettings::new(EmailAddress::parse("news@example.com").unwrap()),
    );
    let report = again.handle(&job).await.unwrap();
    assert_eq!(
        (report.already_done, report.sent, report.retry),
        (5, 0, false),
        "{report:?}"
    );
    assert!(email.sent.lock().unwrap().is_empty());
    let finished = store.get_notification(&n.id).await.unwrap().unwrap();
    assert_eq!(finished.status, Status::Completed);
}

#[tokio::test]
async fn a_message_whose_job_another_worker_holds_comes_back_after_the_lease_as_a_fresh_copy_and_fails_nothing()
 {
    let mut w = AwsWorld::start().await;
    w.config.dispatch_lease_secs = 2;
    let store = store(&w);
    let now = Timestamp::now();
    let (n, job) = five_email_group_send(&store, now).await;
    // Another worker holds the job (a copy of its message, or a worker about to be killed).
    let claims = store.job_claims().unwrap();
    assert!(matches!(
        claims
            .claim_job(&n.id, "#0", now, now + SignedDuration::from_secs(2))
            .await
            .unwrap(),
        JobClaim::Claimed(_)
    ));

    // The job's message, on the last receive before the dead-letter queue.
    let consumer = wiring::dispatch(&w.config, &w.sdk).unwrap();
    consumer
        .queues
        .send_dispatch_after(&job, Duration::ZERO)
        .await
        .unwrap();
    let mut e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(e.records.len(), 1);
    e.records[0].attributes.insert(
        "ApproximateReceiveCount".into(),
        w.config.dispatch_max_receives.to_string(),
    );
    let r = dispatch_event(&consumer, e.clone(), notify_tests::aws::dispatch_deadline()).await;
    assert!(
        r.batch_item_failures.is_empty(),
        "a wait is not a failure: the message is not reported, so it never reaches the DLQ"
    );
    w.settle(&w.config.dispatch_queue_url, &e, &r).await;
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!((counts.pending, counts.failed), (5, 0), "{counts:?}");

    // A fresh copy comes back once the lease has run out, with its receives all ahead of it,
    // and takes the job over.
    assert!(
        w.receive_event(&w.config.dispatch_queue_url, 10)
            .await
            .records
            .is_empty(),
        "not back before the lease runs out"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(again.records.len(), 1);
    assert_eq!(again.records[0].attributes["ApproximateReceiveCount"], "1");
    let r = dispatch_event(
        &consumer,
        again.clone(),
        notify_tests::aws::dispatch_deadline(),
    )
    .await;
    assert!(r.batch_item_failures.is_empty());
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (5, 0), "{counts:?}");
    assert_eq!(w.moto.raw_emails().await.len(), 5);
}
