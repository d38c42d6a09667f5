//! The flow of a notification through the core services, on the in-memory adapters.

use notify_core::ports::{DeliveryStore, NotificationStore, TemplateStore, UserStore};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use notify_core::domain::delivery::DeliveryStatus;
use notify_core::domain::notification::{Content, Counts, Status, Target};
use notify_core::domain::template::Parts;
use notify_core::domain::user::{ChannelPrefs, User};
use notify_core::domain::{Channel, EmailAddress, IdempotencyKey, PhoneNumber, SendAt, UserId};
use notify_core::memory::{
    FakeClock, MemoryQueues, MemoryScheduler, MemoryStore, RecordingEmail, RecordingPoster,
    RecordingSms,
};
use notify_core::ports::{SendError, StaticSigningKey};
use notify_core::services::App;
use notify_core::services::ServiceError;
use notify_core::services::accept::{IdempotentRequest, NewNotification};
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use notify_core::services::unsubscribe::UnsubscribeLinks;
use notify_core::services::webhooks::Webhooks;

struct World {
    clock: Arc<FakeClock>,
    store: Arc<MemoryStore>,
    queues: Arc<MemoryQueues>,
    scheduler: Arc<MemoryScheduler>,
    email: Arc<RecordingEmail>,
    sms: Arc<RecordingSms>,
    app: App,
    poster: Arc<RecordingPoster>,
    fanout: Fanout,
    dispatch: Dispatch,
}

const UNSUBSCRIBE_KEY: &[u8] = b"the deployment's signing key";

fn world() -> World {
    world_with(MemoryStore::default())
}

fn world_with(store: MemoryStore) -> World {
    let clock = Arc::new(FakeClock::new("2026-11-21T00:00:00Z".parse().unwrap()));
    let store = Arc::new(store);
    let queues = Arc::new(MemoryQueues::default());
    let scheduler = Arc::new(MemoryScheduler::default());
    let email = Arc::new(RecordingEmail::default());
    let sms = Arc::new(RecordingSms::default());
    let unsubscribe = Arc::new(UnsubscribeLinks::new(
        Arc::new(StaticSigningKey(UNSUBSCRIBE_KEY.to_vec())),
        "https://notify.example/",
    ));
    let poster = Arc::new(RecordingPoster::default());
    let webhooks = Arc::new(
        Webhooks::new(store.clone(), queues.clone(), poster.clone(), clock.clone())
            .with_cache_for(std::time::Duration::ZERO),
    );
    let app = App {
        preview: Arc::new(notify_core::services::preview::Preview::new(
            store.clone(),
            clock.clone(),
            unsubscribe.clone(),
            notify_core::domain::EmailAddress::parse("shop@notify.example").unwrap(),
        )),
        inbox: Arc::new(notify_core::services::inbox::Inbox::new(
            store.clone(),
            clock.clone(),
        )),
        user_tokens: Arc::new(notify_core::services::user_tokens::UserTokens::new(
            Arc::new(StaticSigningKey(UNSUBSCRIBE_KEY.to_vec())),
            clock.clone(),
        )),
        webhooks: webhooks.clone(),
        store: store.clone(),
        scheduler: scheduler.clone(),
        queues: queues.clone(),
        clock: clock.clone(),
        unsubscribe: unsubscribe.clone(),
    };
    let fanout = Fanout {
        store: store.clone(),
        queues: queues.clone(),
        clock: clock.clone(),
        settings: FanoutSettings::default(),
    };
    let dispatch = Dispatch::new(
        store.clone(),
        email.clone(),
        sms.clone(),
        clock.clone(),
        DispatchSettings {
            lease: SignedDuration::from_secs(60),
            max_attempts: 3,
            throttle_pause: std::time::Duration::from_millis(1),
            ..DispatchSettings::new(EmailAddress::parse("from@example.com").unwrap())
        },
    )
    .with_unsubscribe(unsubscribe)
    .with_webhooks(webhooks);
    World {
        poster,
        clock,
        store,
        queues,
        scheduler,
        email,
        sms,
        app,
        fanout,
        dispatch,
    }
}

impl World {
    /// Runs every queued fanout and dispatch job until both queues are empty.
    async fn drain(&self) {
        loop {
            let fanouts = self.queues.take_fanout();
            let dispatches = self.queues.take_dispatch();
            if fanouts.is_empty() && dispatches.is_empty() {
                return;
            }
            for job in fanouts {
                self.fanout.handle(&job).await.unwrap();
            }
            for job in dispatches {
                self.dispatch.handle(&job).await.unwrap();
            }
        }
    }

    /// The addresses emailed so far, sorted.
    fn emailed(&self) -> Vec<String> {
        let mut sent: Vec<String> = self
            .email
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.to.as_str().to_owned())
            .collect();
        sent.sort();
        sent
    }

    /// What the scheduler adapter does when a schedule comes due.
    async fn fire_due(&self) {
        let now = self.clock.now();
        let due: Vec<_> = self
            .scheduler
            .schedules
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.scheduler.schedules.lock().unwrap().remove(&id);
            self.fanout
                .handle(&notify_core::jobs::FanoutJob::start(id))
                .await
                .unwrap();
        }
        self.drain().await;
    }
}

use notify_core::ports::Clock;

/// A user `id` whose email address is `id@example.org`.
fn emailable(id: &str) -> User {
    User {
        id: UserId::parse(id).unwrap(),
        email: Some(EmailAddress::parse(&format!("{id}@example.org")).unwrap()),
        phone: None,
        timezone: None,
        locale: None,
        channels: ChannelPrefs::default(),
    }
}

fn email_to(addr: &str) -> NewNotification {
    NewNotification {
        to: Target::Email(EmailAddress::parse(addr).unwrap()),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("Hi".into()),
            text: Some("Body".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: None,
    }
}

#[tokio::test]
async fn now_goes_queued_sending_completed() {
    let w = world();
    let a = w.app.accept(email_to("a@example.com"), None).await.unwrap();
    assert_eq!(a.body["status"], "queued");
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Queued);
    assert_eq!(w.queues.fanout.lock().unwrap().len(), 1);

    let job = w.queues.take_fanout().remove(0);
    let report = w.fanout.handle(&job).await.unwrap();
    assert_eq!((report.deliveries, report.dispatch_jobs), (1, 1));
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Sending
    );
    assert_eq!(w.store.counts(&a.id).await.unwrap().pending, 1);

    w.drain().await;
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Completed);
    let sent = w.email.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let raw = String::from_utf8(sent[0].raw.clone()).unwrap();
    assert!(
        raw.contains("Subject: Hi")
            && raw.contains("To: a@example.com")
            && raw.contains("From: from@example.com"),
        "{raw}"
    );
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!((counts.recipients, counts.sent, counts.pending), (1, 1, 0));
}

#[tokio::test]
async fn a_dispatch_job_delivered_twice_sends_once() {
    let w = world();
    let a = w
        .app
        .accept(email_to("twice@example.com"), None)
        .await
        .unwrap();
    let job = w.queues.take_fanout().remove(0);
    w.fanout.handle(&job).await.unwrap();
    // The queue delivers the fanout job again, and then each dispatch job twice.
    w.fanout.handle(&job).await.unwrap();
    let dispatches = w.queues.take_dispatch();
    assert_eq!(
        dispatches.len(),
        2,
        "a repeated fanout repeats dispatch jobs"
    );
    for job in dispatches.iter().chain(dispatches.iter()) {
        w.dispatch.handle(job).await.unwrap();
    }
    assert_eq!(w.email.sent.lock().unwrap().len(), 1);
    assert_eq!(
        w.store.counts(&a.id).await.unwrap().recipients,
        1,
        "no extra delivery rows"
    );
}

#[tokio::test]
async fn scheduled_then_fired_at_send_at() {
    let w = world();
    let mut req = email_to("later@example.com");
    req.send_at = SendAt::At(w.clock.now() + SignedDuration::from_secs(30));
    let a = w.app.accept(req, None).await.unwrap();
    assert_eq!(a.body["status"], "scheduled");
    assert!(w.queues.fanout.lock().unwrap().is_empty());
    assert_eq!(w.scheduler.schedules.lock().unwrap().len(), 1);
    w.fire_due().await;
    assert!(
        w.email.sent.lock().unwrap().is_empty(),
        "not before send_at"
    );
    w.clock.advance(SignedDuration::from_secs(30));
    w.fire_due().await;
    assert_eq!(w.email.sent.lock().unwrap().len(), 1);
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Completed
    );
}

#[tokio::test]
async fn cancel_stops_a_schedule_that_fires_anyway() {
    let w = world();
    let mut req = email_to("c@example.com");
    req.send_at = SendAt::At(w.clock.now() + SignedDuration::from_secs(30));
    let a = w.app.accept(req, None).await.unwrap();
    let n = w.app.cancel(&a.id).await.unwrap();
    assert_eq!(n.status, Status::Cancelled);
    assert!(w.scheduler.schedules.lock().unwrap().is_empty());
    // The schedule fires anyway (deleted too late): the fanout re-checks and sends nothing.
    w.clock.advance(SignedDuration::from_secs(31));
    let report = w
        .fanout
        .handle(&notify_core::jobs::FanoutJob::start(a.id.clone()))
        .await
        .unwrap();
    assert_eq!(report.ignored, Some("cancelled"));
    w.drain().await;
    assert!(w.email.sent.lock().unwrap().is_empty());
    // Cancelling again is fine; once started it is a conflict.
    assert!(w.app.cancel(&a.id).await.is_ok());
    let b = w.app.accept(email_to("d@example.com"), None).await.unwrap();
    w.drain().await;
    assert!(matches!(
        w.app.cancel(&b.id).await,
        Err(ServiceError::Conflict(_))
    ));
}

#[tokio::test]
async fn reschedule_later_ignores_the_old_fire() {
    let w = world();
    let mut req = email_to("r@example.com");
    req.send_at = SendAt::At(w.clock.now() + SignedDuration::from_secs(10));
    let a = w.app.accept(req, None).await.unwrap();
    let new_at = w.clock.now() + SignedDuration::from_secs(60);
    let n = w.app.reschedule(&a.id, SendAt::At(new_at)).await.unwrap();
    assert_eq!(n.send_at, new_at);
    assert_eq!(w.scheduler.schedules.lock().unwrap()[&a.id], new_at);
    // A stale fire at the old time (the old schedule was not yet moved) sends nothing: the job
    // goes back on the queue until the new send_at, to the second.
    w.clock.advance(SignedDuration::from_secs(10));
    let report = w
        .fanout
        .handle(&notify_core::jobs::FanoutJob::start(a.id.clone()))
        .await
        .unwrap();
    assert_eq!(report.ignored, Some("not yet due: held back until send_at"));
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Scheduled
    );
    let held = w.queues.delayed_fanout.lock().unwrap().clone();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1, std::time::Duration::from_secs(50));
    // A fire more than SQS's 15 minutes early is left to the schedule of the new send_at.
    let far = w.clock.now() + SignedDuration::from_secs(3600);
    w.app.reschedule(&a.id, SendAt::At(far)).await.unwrap();
    let report = w
        .fanout
        .handle(&notify_core::jobs::FanoutJob::start(a.id.clone()))
        .await
        .unwrap();
    assert_eq!(
        report.ignored,
        Some("fired before send_at; the schedule of the new send_at will fire")
    );
    w.app.reschedule(&a.id, SendAt::At(new_at)).await.unwrap();
    w.clock.advance(SignedDuration::from_secs(50));
    w.fire_due().await;
    assert_eq!(w.email.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_replays_conflicts_and_expires() {
    let w = world();
    let key = IdempotencyKey::parse("k1").unwrap();
    let body = json!({"any": "body"});
    let idem = || Some(IdempotentRequest::new(key.clone(), &body));
    let first = w
        .app
        .accept(email_to("i@example.com"), idem())
        .await
        .unwrap();
    let again = w
        .app
        .accept(email_to("i@example.com"), idem())
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.body, again.body);
    assert!(again.replayed && !first.replayed);
    let other = IdempotentRequest::new(key.clone(), &json!({"other": "body"}));
    assert!(matches!(
        w.app.accept(email_to("i@example.com"), Some(other)).await,
        Err(ServiceError::Conflict(_))
    ));
    w.drain().await;
    assert_eq!(w.email.sent.lock().unwrap().len(), 1);
    // After 24 hours the key is free again.
    w.clock
        .advance(SignedDuration::from_hours(24) + SignedDuration::from_secs(1));
    let later = w
        .app
        .accept(email_to("i@example.com"), idem())
        .await
        .unwrap();
    assert_ne!(later.id, first.id);
}

#[tokio::test]
async fn transient_errors_retry_then_fail_after_the_last_attempt() {
    let w = world();
    w.email.fail_next.lock().unwrap().extend([
        SendError::transient("421 busy"),
        SendError::transient("421 busy"),
    ]);
    let a = w.app.accept(email_to("t@example.com"), None).await.unwrap();
    w.fanout
        .handle(&w.queues.take_fanout().remove(0))
        .await
        .unwrap();
    let job = w.queues.take_dispatch().remove(0);
    assert!(w.dispatch.handle(&job).await.unwrap().retry);
    assert!(w.dispatch.handle(&job).await.unwrap().retry);
    let report = w.dispatch.handle(&job).await.unwrap();
    assert_eq!((report.sent, report.retry), (1, false));
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(
        (rows[0].status, rows[0].attempts),
        (DeliveryStatus::Sent, 3)
    );

    w.email.fail_next.lock().unwrap().extend([
        SendError::transient("x"),
        SendError::transient("x"),
        SendError::transient("still down"),
    ]);
    let b = w.app.accept(email_to("u@example.com"), None).await.unwrap();
    w.fanout
        .handle(&w.queues.take_fanout().remove(0))
        .await
        .unwrap();
    let job = w.queues.take_dispatch().remove(0);
    for _ in 0..3 {
        w.dispatch.handle(&job).await.unwrap();
    }
    let rows = w
        .store
        .list_deliveries(&b.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(rows[0].status, DeliveryStatus::Failed);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap()
            .contains("gave up after 3 attempts: still down")
    );
    assert_eq!(
        w.store
            .get_notification(&b.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Failed
    );
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_and_a_mixed_send_is_partially_failed() {
    let w = world();
    let user = User {
        id: UserId::parse("u").unwrap(),
        email: Some(EmailAddress::parse("u@example.com").unwrap()),
        phone: Some(PhoneNumber::parse("+821012345678").unwrap()),
        timezone: None,
        locale: None,
        channels: ChannelPrefs::default(),
    };
    w.store.put_user(&user).await.unwrap();
    w.email
        .fail_next
        .lock()
        .unwrap()
        .push_back(SendError::permanent("550 no such user"));
    let req = NewNotification {
        to: Target::UserId(user.id.clone()),
        channels: vec![Channel::Email, Channel::Sms],
        content: Content::Inline(Parts {
            subject: Some("s".into()),
            text: Some("t".into()),
            sms: Some("m".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: None,
    };
    let a = w.app.accept(req, None).await.unwrap();
    w.drain().await;
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::PartiallyFailed
    );
    assert_eq!(w.sms.sent.lock().unwrap().len(), 1);
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!((counts.recipients, counts.sent, counts.failed), (2, 1, 1));
}

#[tokio::test]
async fn a_user_deleted_before_the_send_is_skipped_with_the_reason() {
    let w = world();
    let user = User {
        id: UserId::parse("gone").unwrap(),
        email: Some(EmailAddress::parse("g@example.com").unwrap()),
        phone: None,
        timezone: None,
        locale: None,
        channels: ChannelPrefs::default(),
    };
    w.store.put_user(&user).await.unwrap();
    let mut req = email_to("x@example.com");
    req.to = Target::UserId(user.id.clone());
    req.channels = vec![Channel::Email, Channel::Sms];
    req.content = Content::Inline(Parts {
        subject: Some("s".into()),
        text: Some("t".into()),
        sms: Some("m".into()),
        ..Default::default()
    });
    req.send_at = SendAt::At(w.clock.now() + SignedDuration::from_secs(5));
    let a = w.app.accept(req, None).await.unwrap();
    w.store.delete_user(&user.id).await.unwrap();
    w.clock.advance(SignedDuration::from_secs(5));
    w.fire_due().await;
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Completed);
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.status == DeliveryStatus::Skipped
        && r.error.as_deref() == Some("the user no longer exists")));
    assert!(w.email.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_user_and_template_are_named() {
    let w = world();
    let mut req = email_to("x@example.com");
    req.to = Target::UserId(UserId::parse("nobody").unwrap());
    req.content = Content::Template {
        id: notify_core::domain::TemplateId::parse("nope").unwrap(),
        data: Default::default(),
    };
    let Err(ServiceError::Invalid(errors)) = w.app.accept(req, None).await else {
        panic!("expected 422")
    };
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["to.user_id", "template.id"]);
    assert!(
        w.store
            .list_notifications(None, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn timestamps_are_kept_to_the_millisecond() {
    let w = world();
    w.clock.advance(SignedDuration::from_nanos(123_456_789));
    let a = w
        .app
        .accept(email_to("ms@example.com"), None)
        .await
        .unwrap();
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(
        n.created_at,
        "2026-11-21T00:00:00.123Z".parse::<Timestamp>().unwrap()
    );
}

#[tokio::test]
async fn throttling_pauses_and_sends_again_without_using_up_attempts() {
    let w = world();
    // More throttles than the attempt limit (3): they slow the send down, they do not fail it.
    w.email
        .fail_next
        .lock()
        .unwrap()
        .extend((0..4).map(|_| SendError::throttled("421 4.7.0 slow down")));
    let a = w
        .app
        .accept(email_to("slow@example.com"), None)
        .await
        .unwrap();
    w.fanout
        .handle(&w.queues.take_fanout().remove(0))
        .await
        .unwrap();
    let job = w.queues.take_dispatch().remove(0);
    let report = w.dispatch.handle(&job).await.unwrap();
    assert_eq!((report.sent, report.throttled, report.retry), (1, 4, false));
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(
        (rows[0].status, rows[0].attempts),
        (DeliveryStatus::Sent, 1),
        "one claim, one attempt"
    );
    assert!(
        w.dispatch.pace(Channel::Email).current_rate().is_some(),
        "the email channel slowed down"
    );
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Completed
    );
}

#[tokio::test]
async fn a_job_the_queue_gives_up_on_marks_its_pending_deliveries_failed() {
    let w = world();
    w.email
        .fail_next
        .lock()
        .unwrap()
        .push_back(SendError::transient("451 try later"));
    let a = w
        .app
        .accept(email_to("dlq@example.com"), None)
        .await
        .unwrap();
    w.fanout
        .handle(&w.queues.take_fanout().remove(0))
        .await
        .unwrap();
    let job = w.queues.take_dispatch().remove(0);
    assert!(w.dispatch.handle(&job).await.unwrap().retry);
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Sending
    );

    assert_eq!(
        w.dispatch
            .give_up(&job, "dead-lettered after 15 receives")
            .await
            .unwrap(),
        1
    );
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(
        (rows[0].status, rows[0].error.as_deref()),
        (
            DeliveryStatus::Failed,
            Some("dead-lettered after 15 receives")
        )
    );
    assert_eq!(
        w.store
            .get_notification(&a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Failed,
        "the send finishes"
    );
    assert_eq!(
        w.dispatch.give_up(&job, "again").await.unwrap(),
        0,
        "a final delivery is left alone"
    );
}

#[tokio::test]
async fn retry_sends_only_the_failed_deliveries_again() {
    let w = world();
    let users: Vec<User> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| User {
            id: UserId::parse(id).unwrap(),
            email: Some(EmailAddress::parse(&format!("{id}@example.com")).unwrap()),
            phone: None,
            timezone: None,
            locale: None,
            channels: ChannelPrefs::default(),
        })
        .collect();
    for u in &users {
        w.store.put_user(u).await.unwrap();
        w.app
            .accept(
                NewNotification {
                    to: Target::UserId(u.id.clone()),
                    ..email_to("x@example.com")
                },
                None,
            )
            .await
            .unwrap();
    }
    let ids: Vec<_> = w
        .store
        .list_notifications(None, 10, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.id)
        .collect();
    // The first send fails for good; the other two go.
    w.email
        .fail_next
        .lock()
        .unwrap()
        .push_back(SendError::permanent("550 mailbox full"));
    w.drain().await;
    let mut by_status = std::collections::HashMap::new();
    for id in &ids {
        by_status.insert(
            w.store.get_notification(id).await.unwrap().unwrap().status,
            id.clone(),
        );
    }
    let (failed_id, completed_id) = (&by_status[&Status::Failed], &by_status[&Status::Completed]);
    assert_eq!(w.email.sent.lock().unwrap().len(), 2);

    // Only a notification that finished with failures can be retried.
    assert!(matches!(
        w.app.retry(completed_id).await,
        Err(ServiceError::Conflict(_))
    ));
    let n = w.app.retry(failed_id).await.unwrap();
    assert_eq!(n.status, Status::Sending);
    assert!(
        matches!(w.app.retry(failed_id).await, Err(ServiceError::Conflict(_))),
        "one retry at a time"
    );
    w.drain().await;

    let sent = w.email.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "only the failed delivery went again");
    let rows = w
        .store
        .list_deliveries(failed_id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(
        (rows[0].status, rows[0].attempts),
        (DeliveryStatus::Sent, 1)
    );
    assert_eq!(
        w.store
            .get_notification(failed_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Completed
    );
    assert_eq!(
        w.store.counts(failed_id).await.unwrap(),
        Counts {
            recipients: 1,
            pending: 0,
            sent: 1,
            failed: 0,
            skipped: 0,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn a_rendered_sms_over_1600_characters_fails_without_a_send() {
    let w = world();
    let template = notify_core::domain::template::Template {
        id: notify_core::domain::TemplateId::parse("long").unwrap(),
        parts: Parts {
            sms: Some("{{ text }}".into()),
            ..Default::default()
        },
    };
    w.store.put_template(&template).await.unwrap();
    let mut data = serde_json::Map::new();
    data.insert("text".into(), json!("x".repeat(1601)));
    let req = NewNotification {
        to: Target::Phone(PhoneNumber::parse("+821012345678").unwrap()),
        channels: vec![Channel::Sms],
        content: Content::Template {
            id: template.id.clone(),
            data,
        },
        send_at: SendAt::Now,
        category: None,
    };
    let a = w.app.accept(req, None).await.unwrap();
    w.drain().await;
    assert!(w.sms.sent.lock().unwrap().is_empty());
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(rows[0].status, DeliveryStatus::Failed);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap()
            .contains("1601 characters"),
        "{:?}",
        rows[0].error
    );
}

#[tokio::test]
async fn a_suppressed_address_is_skipped_with_its_reason_and_no_provider_call() {
    use notify_core::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};
    use notify_core::ports::SuppressionStore;
    let w = world();
    let user = User {
        id: UserId::parse("u").unwrap(),
        email: Some(EmailAddress::parse("Bounced@Example.com").unwrap()),
        phone: Some(PhoneNumber::parse("+821012345678").unwrap()),
        timezone: None,
        locale: None,
        channels: ChannelPrefs::default(),
    };
    w.store.put_user(&user).await.unwrap();
    // Stored lower case; the user's address differs in case and still matches.
    w.store
        .put_suppression(&Suppression {
            address: SuppressedAddress::parse("bounced@example.com").unwrap(),
            reason: SuppressionReason::Bounce,
            created_at: w.clock.now(),
        })
        .await
        .unwrap();
    let send = || NewNotification {
        to: Target::UserId(user.id.clone()),
        channels: vec![Channel::Email, Channel::Sms],
        content: Content::Inline(Parts {
            subject: Some("s".into()),
            text: Some("t".into()),
            sms: Some("m".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: None,
    };
    let a = w.app.accept(send(), None).await.unwrap();
    w.drain().await;
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Completed, "a skip is not a failure");
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    let email = rows
        .iter()
        .find(|r| r.key.channel == Channel::Email)
        .unwrap();
    assert_eq!(email.status, DeliveryStatus::Skipped);
    assert_eq!(email.error.as_deref(), Some("suppressed: bounce"));
    assert!(w.email.sent.lock().unwrap().is_empty(), "no provider call");
    assert_eq!(
        w.sms.sent.lock().unwrap().len(),
        1,
        "the other channel is sent"
    );
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!((counts.sent, counts.skipped, counts.pending), (1, 1, 0));

    // Lifted: the next send reaches the address again.
    w.store
        .delete_suppression(&SuppressedAddress::parse("bounced@example.com").unwrap())
        .await
        .unwrap();
    w.app.accept(send(), None).await.unwrap();
    w.drain().await;
    assert_eq!(w.email.sent.lock().unwrap().len(), 1);
}

/// The `List-Unsubscribe` URL of a raw email, if it has one.
fn unsubscribe_header(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let line = text
        .lines()
        .find(|l| l.starts_with("List-Unsubscribe: <"))?;
    Some(line["List-Unsubscribe: <".len()..line.len() - 1].to_owned())
}

#[tokio::test]
async fn a_group_send_carries_one_click_unsubscribe_and_an_opt_out_is_skipped() {
    use notify_core::domain::category::Category;
    use notify_core::domain::unsubscribe::UnsubscribeToken;
    use notify_core::domain::{CategoryId, GroupId};
    use notify_core::ports::{CategoryStore, GroupStore, PreferenceStore};
    let w = world();
    let group = GroupId::parse("weekly").unwrap();
    w.store.put_group(&group, "Weekly").await.unwrap();
    let mut ids = Vec::new();
    for name in ["ada", "bob", "cy"] {
        let user = User {
            id: UserId::parse(name).unwrap(),
            email: Some(EmailAddress::parse(&format!("{name}@example.org")).unwrap()),
            phone: None,
            timezone: None,
            locale: None,
            channels: ChannelPrefs::default(),
        };
        w.store.put_user(&user).await.unwrap();
        ids.push(user.id);
    }
    w.store.add_members(&group, &ids).await.unwrap();
    let weekly = CategoryId::parse("weekly").unwrap();
    // Bob turned the group's category off on email before the send.
    w.store
        .set_preference(&ids[1], &weekly, Channel::Email, false)
        .await
        .unwrap();
    let send = |category: Option<&str>| NewNotification {
        to: Target::GroupId(group.clone()),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("s".into()),
            text: Some("t".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: category.map(|c| CategoryId::parse(c).unwrap()),
    };

    let a = w.app.accept(send(None), None).await.unwrap();
    w.drain().await;
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(
        n.category,
        Some(weekly.clone()),
        "a group send's category is its group"
    );
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!((counts.sent, counts.skipped), (2, 1));
    let rows = w
        .store
        .list_deliveries(&a.id, 10, None)
        .await
        .unwrap()
        .items;
    let bob = rows.iter().find(|r| r.key.recipient == "bob").unwrap();
    assert_eq!(bob.status, DeliveryStatus::Skipped);
    assert_eq!(bob.error.as_deref(), Some("unsubscribed: weekly"));
    let sent: Vec<_> = w.email.sent.lock().unwrap().drain(..).collect();
    assert_eq!(sent.len(), 2);
    let mut links = Vec::new();
    for email in &sent {
        let text = String::from_utf8_lossy(&email.raw).to_string();
        assert!(
            text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
            "{text}"
        );
        let url = unsubscribe_header(&email.raw).expect("a List-Unsubscribe header");
        let token = url
            .strip_prefix("https://notify.example/u/")
            .unwrap_or_else(|| panic!("{url}"));
        let t = UnsubscribeToken::verify(token, UNSUBSCRIBE_KEY).unwrap();
        assert_eq!(t.category, weekly);
        assert_eq!(format!("{}@example.org", t.user_id), email.to.as_str());
        links.push((email.to.clone(), token.to_owned()));
    }

    // A template shows the same link where it says `{{ unsubscribe_url }}`.
    let template = notify_core::domain::template::Template {
        id: notify_core::domain::TemplateId::parse("digest").unwrap(),
        parts: Parts {
            subject: Some("Digest".into()),
            text: Some("Leave: {{ unsubscribe_url }}".into()),
            ..Default::default()
        },
    };
    w.store.put_template(&template).await.unwrap();
    let t = w
        .app
        .accept(
            NewNotification {
                content: Content::Template {
                    id: template.id.clone(),
                    data: Default::default(),
                },
                ..send(None)
            },
            None,
        )
        .await
        .unwrap();
    w.drain().await;
    assert_eq!(w.store.counts(&t.id).await.unwrap().sent, 2);
    for email in w.email.sent.lock().unwrap().drain(..) {
        // The body may be quoted-printable: its soft line breaks removed.
        let text = String::from_utf8_lossy(&email.raw).replace("=\r\n", "");
        let url = unsubscribe_header(&email.raw).unwrap();
        assert!(text.contains(&format!("Leave: {url}")), "{text}");
    }

    // Ada follows her link (twice: a repeat changes nothing); a forged token changes nothing.
    let (ada_address, ada_token) = links
        .iter()
        .find(|(to, _)| to.as_str() == "ada@example.org")
        .unwrap();
    assert_eq!(ada_address.as_str(), "ada@example.org");
    let forged = UnsubscribeToken {
        user_id: ids[2].clone(),
        category: weekly.clone(),
    }
    .sign(b"another key");
    assert!(matches!(
        w.app
            .unsubscribe
            .unsubscribe(w.store.as_ref(), &forged)
            .await,
        Err(ServiceError::Invalid(_))
    ));
    for _ in 0..2 {
        w.app
            .unsubscribe
            .unsubscribe(w.store.as_ref(), ada_token)
            .await
            .unwrap();
    }
    let b = w.app.accept(send(None), None).await.unwrap();
    w.drain().await;
    let counts = w.store.counts(&b.id).await.unwrap();
    assert_eq!((counts.sent, counts.skipped), (1, 2), "only Cy is left");
    let sent: Vec<_> = w.email.sent.lock().unwrap().drain(..).collect();
    assert_eq!(sent[0].to.as_str(), "cy@example.org");

    // A transactional category reaches everyone, and its email has no unsubscribe link.
    w.store
        .put_category(&Category {
            id: weekly.clone(),
            transactional: true,
            description: None,
        })
        .await
        .unwrap();
    let c = w.app.accept(send(Some("weekly")), None).await.unwrap();
    w.drain().await;
    let counts = w.store.counts(&c.id).await.unwrap();
    assert_eq!((counts.sent, counts.skipped), (3, 0));
    let sent: Vec<_> = w.email.sent.lock().unwrap().drain(..).collect();
    assert!(sent.iter().all(|e| unsubscribe_header(&e.raw).is_none()));

    // A single send without a category has no link either.
    let d = w
        .app
        .accept(
            NewNotification {
                to: Target::UserId(ids[0].clone()),
                ..send(None)
            },
            None,
        )
        .await
        .unwrap();
    w.drain().await;
    assert_eq!(w.store.counts(&d.id).await.unwrap().sent, 1);
    let sent: Vec<_> = w.email.sent.lock().unwrap().drain(..).collect();
    assert!(unsubscribe_header(&sent[0].raw).is_none());
    assert!(
        w.store
            .get_preferences(&ids[0])
            .await
            .unwrap()
            .allows(&weekly, Channel::Sms),
        "the link turned off email only"
    );
}

#[tokio::test]
async fn outcomes_become_signed_webhook_events_and_failed_posts_are_retried_for_a_day() {
    use notify_core::domain::WebhookId;
    use notify_core::domain::webhook::{EventType, Webhook, WebhookUrl, signature};
    use notify_core::ports::WebhookStore;
    use notify_core::services::webhooks::RETRY_PAUSES;
    let w = world();
    let now = w.clock.now();
    let webhook = Webhook {
        id: WebhookId::generate(now),
        url: WebhookUrl::parse("https://hooks.example.com/notify").unwrap(),
        events: vec![
            EventType::DeliveryFailed,
            EventType::NotificationFailed,
            EventType::NotificationCompleted,
        ],
        description: None,
        secret: Webhook::new_secret(),
        created_at: now,
        disabled: None,
    };
    w.store.put_webhook(&webhook).await.unwrap();
    for name in ["ada", "bob"] {
        w.store
            .put_user(&User {
                id: UserId::parse(name).unwrap(),
                email: Some(EmailAddress::parse(&format!("{name}@example.org")).unwrap()),
                phone: None,
                timezone: None,
                locale: None,
                channels: ChannelPrefs::default(),
            })
            .await
            .unwrap();
    }
    // Bob's address is refused for good.
    w.email
        .fail_next
        .lock()
        .unwrap()
        .push_back(SendError::permanent("550 no such user"));
    let mut ids = Vec::new();
    for name in ["bob", "ada"] {
        let a = w
            .app
            .accept(
                NewNotification {
                    to: Target::UserId(UserId::parse(name).unwrap()),
                    channels: vec![Channel::Email],
                    content: Content::Inline(Parts {
                        subject: Some("s".into()),
                        text: Some("t".into()),
                        ..Default::default()
                    }),
                    send_at: SendAt::Now,
                    category: None,
                },
                None,
            )
            .await
            .unwrap();
        ids.push(a.id);
        w.drain().await;
    }
    // Only the types the endpoint asked for: no delivery.sent.
    let jobs = w.queues.take_webhooks();
    let types: Vec<EventType> = jobs
        .iter()
        .flat_map(|(j, _)| j.events.iter().map(|e| e.event_type))
        .collect();
    assert_eq!(
        types,
        [
            EventType::DeliveryFailed,
            EventType::NotificationFailed,
            EventType::NotificationCompleted
        ]
    );
    assert_eq!(jobs[0].0.events[0].data["notification_id"], ids[0].as_str());
    assert_eq!(jobs[0].0.events[0].data["error"], "550 no such user");

    // Posted signed; a failed post comes back after 5 s, with the same webhook-id.
    w.poster
        .fail_next
        .lock()
        .unwrap()
        .push_back("the endpoint answered 503".into());
    let report = w.app.webhooks.deliver(&jobs[0].0).await.unwrap();
    assert_eq!((report.posted, report.retried), (1, 1));
    let posted = w.poster.posted.lock().unwrap().clone();
    let (url, headers, body) = &posted[0];
    assert_eq!(url, "https://hooks.example.com/notify");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
    assert_eq!(
        header("webhook-signature"),
        signature(&webhook.secret, &id, ts.parse().unwrap(), body).unwrap()
    );
    let sent: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        sent["type"], "notification.failed",
        "the delivery event failed, the next went"
    );
    let retried = w.queues.take_webhooks();
    assert_eq!(retried.len(), 1);
    let (job, delay) = &retried[0];
    assert_eq!((job.attempt, *delay), (1, RETRY_PAUSES[0]));
    assert_eq!(job.events.len(), 1);
    assert_eq!(
        job.events[0].id, jobs[0].0.events[0].id,
        "the same event, the same id"
    );
    w.app.webhooks.deliver(job).await.unwrap();
    assert_eq!(w.poster.posted.lock().unwrap().len(), 2);

    // A pause longer than a queue holds a message waits in hops until its time.
    let mut late = job.clone();
    late.attempt = 3;
    w.poster
        .fail_next
        .lock()
        .unwrap()
        .push_back("timeout".into());
    w.app.webhooks.deliver(&late).await.unwrap();
    let (hop, delay) = w.queues.take_webhooks().pop().unwrap();
    assert_eq!(delay, std::time::Duration::from_secs(900));
    assert_eq!(hop.attempt, 4);
    let not_before = hop.not_before.unwrap();
    w.app.webhooks.deliver(&hop).await.unwrap();
    let (again, _) = w.queues.take_webhooks().pop().unwrap();
    assert_eq!(again, hop, "too early: put back as it is");
    w.clock.advance(SignedDuration::from_hours(5));
    assert!(w.clock.now() >= not_before);
    let before = w.poster.posted.lock().unwrap().len();
    w.app.webhooks.deliver(&again).await.unwrap();
    assert_eq!(w.poster.posted.lock().unwrap().len(), before + 1);

    // After the last attempt, dropped; a deleted endpoint takes nothing.
    let mut last = job.clone();
    last.attempt = RETRY_PAUSES.len() as u32;
    w.poster
        .fail_next
        .lock()
        .unwrap()
        .push_back("still down".into());
    let report = w.app.webhooks.deliver(&last).await.unwrap();
    assert_eq!((report.retried, report.dropped), (0, 1));
    assert!(w.queues.take_webhooks().is_empty());
    // ... and the endpoint is disabled with the reason: it is sent nothing more.
    let disabled = w.store.get_webhook(&webhook.id).await.unwrap().unwrap();
    let reason = disabled.disabled.unwrap().reason;
    assert!(reason.contains("failed every attempt"), "{reason}");
    let emitted = w
        .app
        .webhooks
        .emit(vec![notify_core::services::webhooks::finished_event(
            &ids[1],
            Status::Completed,
            w.clock.now(),
        )])
        .await
        .unwrap();
    assert_eq!(emitted, 0, "a disabled endpoint is sent nothing");
    w.store.delete_webhook(&webhook.id).await.unwrap();
    let report = w.app.webhooks.deliver(job).await.unwrap();
    assert_eq!(report.posted, 0);
}

#[tokio::test]
async fn a_group_split_into_segments_fans_out_each_once_under_repeats_and_finishes_after_the_last()
{
    use notify_core::domain::GroupId;
    use notify_core::ports::GroupStore;
    const MEMBERS: usize = 40;
    let mut w = world_with(MemoryStore::with_member_segments(8));
    // Small pages and no time budget: every page of a segment is its own continuation.
    w.fanout.settings.page_size = 2;
    w.fanout.settings.time_budget = std::time::Duration::ZERO;
    let group = GroupId::parse("all").unwrap();
    w.store.put_group(&group, "All").await.unwrap();
    let ids: Vec<UserId> = (0..MEMBERS)
        .map(|i| UserId::parse(&format!("s{i:02}")).unwrap())
        .collect();
    for id in &ids {
        w.store.put_user(&emailable(id.as_str())).await.unwrap();
    }
    w.store.add_members(&group, &ids).await.unwrap();
    let a = w
        .app
        .accept(
            NewNotification {
                to: Target::GroupId(group),
                ..email_to("x@example.org")
            },
            None,
        )
        .await
        .unwrap();

    // The queue delivers the first job twice: the send is split twice.
    let start = w.queues.take_fanout().remove(0);
    for _ in 0..2 {
        let report = w.fanout.handle(&start).await.unwrap();
        assert_eq!(report.segments, 8);
    }
    let segments = w.queues.take_fanout();
    assert_eq!(segments.len(), 16, "a job per segment, twice");
    // Every segment but the last one of the split, each job (and each continuation) handled
    // twice, every dispatch job twice: nothing is pending, and yet the send is not finished.
    let last = segments[7].segment;
    let mut jobs: Vec<_> = segments
        .iter()
        .filter(|j| j.segment != last)
        .cloned()
        .collect();
    while !jobs.is_empty() {
        for job in &jobs {
            w.fanout.handle(job).await.unwrap();
            w.fanout.handle(job).await.unwrap();
        }
        jobs = w.queues.take_fanout();
        jobs.retain(|j| j.segment != last);
    }
    for job in w.queues.take_dispatch() {
        w.dispatch.handle(&job).await.unwrap();
        w.dispatch.handle(&job).await.unwrap();
    }
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!(counts.pending, 0);
    assert!(
        counts.sent > 0 && (counts.sent as usize) < MEMBERS,
        "{counts:?}"
    );
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Sending, "one segment is still to come");

    // The last segment, twice; then all of it.
    for job in segments.iter().filter(|j| j.segment == last) {
        w.fanout.handle(job).await.unwrap();
    }
    w.drain().await;
    let sent = w.emailed();
    let want: Vec<String> = ids.iter().map(|id| format!("{id}@example.org")).collect();
    assert_eq!(sent, want, "every member once");
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!(
        (counts.recipients, counts.sent, counts.pending),
        (MEMBERS as u64, MEMBERS as u64, 0)
    );
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Completed);
}

#[tokio::test]
async fn a_page_fanned_out_again_after_the_group_changed_dispatches_what_was_counted() {
    use notify_core::domain::GroupId;
    use notify_core::ports::GroupStore;
    let mut w = world();
    // One page per fanout job.
    w.fanout.settings.page_size = 4;
    w.fanout.settings.time_budget = std::time::Duration::ZERO;
    let group = GroupId::parse("all").unwrap();
    w.store.put_group(&group, "All").await.unwrap();
    let ids: Vec<UserId> = (0..8)
        .map(|i| UserId::parse(&format!("s{i:02}")).unwrap())
        .collect();
    for id in ids.iter().map(|id| id.as_str()).chain(["s01a"]) {
        w.store.put_user(&emailable(id)).await.unwrap();
    }
    w.store.add_members(&group, &ids).await.unwrap();
    let a = w
        .app
        .accept(
            NewNotification {
                to: Target::GroupId(group.clone()),
                ..email_to("x@example.org")
            },
            None,
        )
        .await
        .unwrap();

    // The first page is recorded and counted, and the invocation dies before its dispatch
    // jobs and its continuation reach the queue.
    let start = w.queues.take_fanout().remove(0);
    let report = w.fanout.handle(&start).await.unwrap();
    assert_eq!((report.pages, report.repeated_pages), (1, 0));
    assert_eq!(w.queues.take_dispatch().len(), 1);
    assert_eq!(w.queues.take_fanout().len(), 1);
    // Meanwhile a member of that page leaves and another joins within its range.
    w.store
        .remove_members(&group, &[UserId::parse("s02").unwrap()])
        .await
        .unwrap();
    w.store
        .add_members(&group, &[UserId::parse("s01a").unwrap()])
        .await
        .unwrap();

    // The job comes again: the page as recorded, and the next one from where it ended.
    let report = w.fanout.handle(&start).await.unwrap();
    assert_eq!((report.pages, report.repeated_pages), (1, 1));
    w.drain().await;
    let sent = w.emailed();
    // s02 was counted on the first page and is sent to; s01a joined a page already counted
    // (the next send reaches it); the second page (s04 to s07) is read as it is now.
    let want: Vec<String> = (0..8).map(|i| format!("s{i:02}@example.org")).collect();
    assert_eq!(sent, want);
    let counts = w.store.counts(&a.id).await.unwrap();
    assert_eq!(
        (counts.recipients, counts.sent, counts.pending),
        (8, 8, 0),
        "{counts:?}"
    );
    let n = w.store.get_notification(&a.id).await.unwrap().unwrap();
    assert_eq!(n.status, Status::Completed);
}

/// A group page's dispatch jobs are claimed whole by key on DynamoDB, so the same key must hold
/// the same deliveries every time the page is fanned out: split by count over the page's
/// record, not by bytes over profiles that may have grown in between.
#[tokio::test]
async fn a_page_fanned_out_again_makes_the_same_keyed_jobs_though_profiles_grew() {
    use notify_core::domain::GroupId;
    use notify_core::ports::GroupStore;
    let mut w = world();
    w.fanout.settings.page_size = 5;
    w.fanout.settings.recipients_per_job = 2;
    // Small enough that a longer address would move a split by size.
    w.fanout.settings.max_job_bytes = 400;
    let group = GroupId::parse("all").unwrap();
    w.store.put_group(&group, "All").await.unwrap();
    let ids: Vec<UserId> = (0..5)
        .map(|i| UserId::parse(&format!("k{i:02}")).unwrap())
        .collect();
    for id in &ids {
        w.store.put_user(&emailable(id.as_str())).await.unwrap();
    }
    w.store.add_members(&group, &ids).await.unwrap();
    w.app
        .accept(
            NewNotification {
                to: Target::GroupId(group.clone()),
                ..email_to("x@example.org")
            },
            None,
        )
        .await
        .unwrap();
    let start = w.queues.take_fanout().remove(0);
    w.fanout.handle(&start).await.unwrap();
    let first = w.queues.take_dispatch();
    let shape = |jobs: &[notify_core::jobs::DispatchJob]| -> Vec<(Option<String>, Vec<String>)> {
        jobs.iter()
            .map(|j| {
                let members = j.items.iter().map(|i| i.recipient.key.clone()).collect();
                (j.key.clone(), members)
            })
            .collect()
    };
    assert_eq!(
        shape(&first),
        vec![
            (Some("#0".into()), vec!["k00".into(), "k01".into()]),
            (Some("#1".into()), vec!["k02".into(), "k03".into()]),
            (Some("#2".into()), vec!["k04".into()]),
        ]
    );
    let mut grown = emailable("k00");
    grown.email = Some(
        EmailAddress::parse(&format!(
            "k00@{}.{}.example.org",
            "a".repeat(60),
            "b".repeat(60)
        ))
        .unwrap(),
    );
    w.store.put_user(&grown).await.unwrap();

    let report = w.fanout.handle(&start).await.unwrap();
    assert_eq!(report.repeated_pages, 1);
    let again = w.queues.take_dispatch();
    assert_eq!(shape(&again), shape(&first));
    // The job carries the profile as it is now.
    assert_eq!(again[0].items[0].recipient.email, grown.email);
}
