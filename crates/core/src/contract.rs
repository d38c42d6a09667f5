//! The behaviour every `Store` adapter must have, as one test suite that each adapter's tests
//! run against a fresh store (in memory, SQLite, DynamoDB).

use jiff::{SignedDuration, Timestamp};

use crate::domain::api_key::{NewApiKey, secret_hash};
use crate::domain::category::Category;
use crate::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome, Recipient};
use crate::domain::fanned_out_page::{FannedOutPage, PageMember};
use crate::domain::job_claim::{JobClaim, JobLease, JobTotals};
use crate::domain::notification::{Content, Counts, Notification, Status, Target};
use crate::domain::preferences::Preferences;
use crate::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};
use crate::domain::template::{Parts, Template};
use crate::domain::user::{ChannelPrefs, User};
use crate::domain::{
    CategoryId, Channel, EmailAddress, GroupId, IdempotencyKey, NotificationId, TemplateId, UserId,
};
use crate::ports::{IdempotencyRecord, InsertOutcome, Store, StoreError};

fn t0() -> Timestamp {
    "2026-11-21T00:00:00Z".parse().unwrap()
}

fn notification(at: Timestamp, status: Status) -> Notification {
    Notification {
        id: NotificationId::generate(at),
        to: Target::Email(EmailAddress::parse("a@example.com").unwrap()),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("s".into()),
            text: Some("t".into()),
            ..Default::default()
        }),
        send_at: at,
        created_at: at,
        status,
        category: Some(CategoryId::parse("news").unwrap()),
    }
}

/// The promises of `JobClaimStore`, for a store that offers it (`DeliveryStore::job_claims`).
pub async fn run_job_claims(store: &dyn Store) {
    let claims = store.job_claims().expect("this store claims jobs whole");
    let now = t0() + SignedDuration::from_hours(3000);
    let n = notification(now, Status::Sending);
    store.insert_notification(&n, None, now).await.unwrap();
    let recipients: Vec<Recipient> = (0..3)
        .map(|i| Recipient::email(EmailAddress::parse(&format!("j{i}@example.com")).unwrap()))
        .collect();
    let planned: Vec<Delivery> = recipients
        .iter()
        .map(|r| Delivery::pending(&n.id, r, Channel::Email))
        .collect();
    let keys: Vec<DeliveryKey> = planned.iter().map(|d| d.key.clone()).collect();
    assert!(
        store
            .insert_deliveries(
                &n.id,
                "",
                &FannedOutPage::default(),
                &[Channel::Email],
                &planned
            )
            .await
            .unwrap()
    );
    let lease_until = now + SignedDuration::from_secs(60);
    let JobClaim::Claimed(first) = claims
        .claim_job(&n.id, "#0", now, lease_until)
        .await
        .unwrap()
    else {
        panic!("a new job is claimed");
    };
    assert_eq!(
        first,
        JobLease {
            attempt: 1,
            counted: JobTotals::default()
        }
    );
    assert!(first.is_first());
    assert_eq!(
        claims
            .claim_job(&n.id, "#0", now, lease_until)
            .await
            .unwrap(),
        JobClaim::Busy
    );
    // Another job of the same notification is its own.
    assert!(matches!(
        claims
            .claim_job(&n.id, "#1", now, lease_until)
            .await
            .unwrap(),
        JobClaim::Claimed(JobLease { attempt: 1, .. })
    ));

    let sent = Delivery {
        status: DeliveryStatus::Sent,
        attempts: 1,
        sent_at: Some(now),
        provider_message_id: Some("pj0".into()),
        ..planned[0].clone()
    };
    assert!(claims.put_job_delivery(&sent).await.unwrap());
    // A final row is never written over.
    let failed = Delivery {
        status: DeliveryStatus::Failed,
        error: Some("late".into()),
        ..planned[0].clone()
    };
    assert!(!claims.put_job_delivery(&failed).await.unwrap());
    // A pending row (a retried send) is, by its outcome.
    let retried = Delivery {
        attempts: 1,
        error: Some("try again".into()),
        ..planned[1].clone()
    };
    assert!(claims.put_job_delivery(&retried).await.unwrap());
    let rows = claims.job_deliveries(&keys).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = |k: &DeliveryKey| rows.iter().find(|r| &r.key == k).unwrap().clone();
    assert_eq!(row(&keys[0]), sent);
    assert_eq!(
        (row(&keys[1]).status, row(&keys[1]).attempts),
        (DeliveryStatus::Pending, 1)
    );
    assert!(
        claims
            .put_job_delivery(&Delivery {
                status: DeliveryStatus::Failed,
                attempts: 2,
                error: Some("gave up".into()),
                ..planned[1].clone()
            })
            .await
            .unwrap()
    );

    // The commit moves the counts by the job's outcomes and releases the lease.
    let one_each = JobTotals {
        sent: 1,
        failed: 1,
        skipped: 0,
    };
    assert!(
        claims
            .commit_job(&n.id, "#0", &first, one_each, false)
            .await
            .unwrap()
    );
    // Sent again (its answer was lost), the same commit moves nothing.
    assert!(
        !claims
            .commit_job(&n.id, "#0", &first, one_each, false)
            .await
            .unwrap()
    );
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!(
        (
            counts.recipients,
            counts.pending,
            counts.sent,
            counts.failed
        ),
        (3, 1, 1, 1),
        "{counts:?}"
    );
    let JobClaim::Claimed(second) = claims
        .claim_job(&n.id, "#0", now, lease_until)
        .await
        .unwrap()
    else {
        panic!("a released job is claimed again");
    };
    assert_eq!(
        second,
        JobLease {
            attempt: 2,
            counted: one_each
        }
    );
    // The first claim's lease is over: its commit changes nothing.
    assert!(
        !claims
            .commit_job(
                &n.id,
                "#0",
                &first,
                JobTotals {
                    sent: 3,
                    ..one_each
                },
                true
            )
            .await
            .unwrap()
    );
    let skipped = Delivery {
        status: DeliveryStatus::Skipped,
        error: Some("suppressed".into()),
        ..planned[2].clone()
    };
    assert!(claims.put_job_delivery(&skipped).await.unwrap());
    let all = JobTotals {
        skipped: 1,
        ..one_each
    };
    assert!(
        claims
            .commit_job(&n.id, "#0", &second, all, true)
            .await
            .unwrap()
    );
    let counts = store.counts(&n.id).await.unwrap();
    assert_eq!(
        (counts.pending, counts.sent, counts.failed, counts.skipped),
        (0, 1, 1, 1),
        "{counts:?}"
    );
    assert_eq!(
        claims
            .claim_job(&n.id, "#0", now, lease_until)
            .await
            .unwrap(),
        JobClaim::Done
    );
    // A lease that ran out is taken over.
    let later = lease_until + SignedDuration::from_secs(1);
    assert!(matches!(
        claims
            .claim_job(&n.id, "#1", later, later + SignedDuration::from_secs(60))
            .await
            .unwrap(),
        JobClaim::Claimed(JobLease { attempt: 2, .. })
    ));
}

/// Runs every check; panics with the first broken promise.
pub async fn run_all(store: &dyn Store) {
    categories_and_preferences(store).await;
    users_and_templates(store).await;
    groups(store).await;
    idempotency(store).await;
    notifications(store).await;
    deliveries(store).await;
    api_keys(store).await;
    suppressions(store).await;
    inbox(store).await;
    push_subscriptions(store).await;
    a_deleted_user_takes_what_is_theirs(store).await;
}

async fn a_deleted_user_takes_what_is_theirs(store: &dyn Store) {
    use crate::domain::inbox::{InboxCounts, InboxFilter, NewInboxItem};
    use crate::domain::push::PushSubscription;
    let cy = UserId::parse("gone-cy").unwrap();
    let dee = UserId::parse("stays-dee").unwrap();
    let news = CategoryId::parse("news").unwrap();
    for user in [&cy, &dee] {
        store
            .put_user(&User {
                id: user.clone(),
                email: None,
                phone: None,
                timezone: None,
                locale: None,
                channels: ChannelPrefs::default(),
            })
            .await
            .unwrap();
        store
            .set_preference(user, &news, Channel::Email, false)
            .await
            .unwrap();
        for i in 0..3 {
            store
                .add_inbox_item(&NewInboxItem {
                    user_id: user.clone(),
                    notification_id: NotificationId::generate(t0() + SignedDuration::from_secs(i)),
                    category: None,
                    title: None,
                    body: "b".into(),
                    url: None,
                    data: Default::default(),
                    created_at: t0(),
                })
                .await
                .unwrap();
        }
        store
            .put_push_subscription(
                &PushSubscription::fcm(user.clone(), &format!("token-{user}"), t0()).unwrap(),
            )
            .await
            .unwrap();
    }
    assert!(store.delete_user(&cy).await.unwrap());
    let all = InboxFilter {
        unread_only: false,
        archived: false,
    };
    assert!(
        store
            .get_preferences(&cy)
            .await
            .unwrap()
            .categories
            .is_empty()
    );
    assert!(
        store
            .list_inbox(&cy, &all, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store.inbox_counts(&cy).await.unwrap(),
        InboxCounts::default()
    );
    assert!(store.list_push_subscriptions(&cy).await.unwrap().is_empty());
    // Another user's keep.
    assert_eq!(
        store.get_preferences(&dee).await.unwrap().categories.len(),
        1
    );
    assert_eq!(
        store
            .list_inbox(&dee, &all, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert_eq!(store.list_push_subscriptions(&dee).await.unwrap().len(), 1);
}

async fn push_subscriptions(store: &dyn Store) {
    use crate::domain::push::PushSubscription;
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    let ada = UserId::parse("push-ada").unwrap();
    let bob = UserId::parse("push-bob").unwrap();
    let sub = |user: &UserId, endpoint: &str, auth: &str| {
        PushSubscription::parse(user.clone(), Some(endpoint), Some(P256DH), Some(auth), t0())
            .unwrap()
    };
    assert!(
        store
            .list_push_subscriptions(&ada)
            .await
            .unwrap()
            .is_empty()
    );
    let a1 = sub(&ada, "https://push.example/a1", "BTBZMqHH6r4Tts7J_aSIgg");
    let a2 = sub(&ada, "https://push.example/a2", "BTBZMqHH6r4Tts7J_aSIgg");
    store.put_push_subscription(&a1).await.unwrap();
    store.put_push_subscription(&a2).await.unwrap();
    store
        .put_push_subscription(&sub(
            &bob,
            "https://push.example/b1",
            "BTBZMqHH6r4Tts7J_aSIgg",
        ))
        .await
        .unwrap();
    // The same browser again, with new keys: replaced, not added.
    let a1_new = sub(&ada, "https://push.example/a1", "AAAAAAAAAAAAAAAAAAAAAA");
    store.put_push_subscription(&a1_new).await.unwrap();
    let mut listed = store.list_push_subscriptions(&ada).await.unwrap();
    listed.sort_by(|x, y| x.endpoint().cmp(&y.endpoint()));
    assert_eq!(listed, [a1_new, a2.clone()]);
    assert!(
        !store.delete_push_subscription(&bob, &a2.id).await.unwrap(),
        "not bob's"
    );
    assert!(store.delete_push_subscription(&ada, &a2.id).await.unwrap());
    assert!(!store.delete_push_subscription(&ada, &a2.id).await.unwrap());
    assert_eq!(store.list_push_subscriptions(&ada).await.unwrap().len(), 1);
    assert_eq!(store.list_push_subscriptions(&bob).await.unwrap().len(), 1);
    let phone = PushSubscription::fcm(bob.clone(), "fcm:token_1", t0()).unwrap();
    store.put_push_subscription(&phone).await.unwrap();
    let bobs = store.list_push_subscriptions(&bob).await.unwrap();
    assert!(bobs.contains(&phone), "an app's token is kept as it came");
}

async fn inbox(store: &dyn Store) {
    use crate::domain::inbox::{ActionUrl, InboxCounts, InboxFilter, InboxMark, NewInboxItem};
    let ada = UserId::parse("inbox-ada").unwrap();
    let bob = UserId::parse("inbox-bob").unwrap();
    let new = |user: &UserId, i: i64| NewInboxItem {
        user_id: user.clone(),
        notification_id: NotificationId::generate(t0() + SignedDuration::from_secs(i)),
        category: Some(CategoryId::parse("news").unwrap()),
        title: Some(format!("title {i}")),
        body: format!("body {i}"),
        url: Some(ActionUrl::parse("/orders/7").unwrap()),
        data: serde_json::json!({"n": i}).as_object().unwrap().clone(),
        created_at: t0() + SignedDuration::from_secs(i),
    };
    let news: Vec<NewInboxItem> = (0..5).map(|i| new(&ada, i)).collect();
    let mut added = Vec::new();
    for (i, n) in news.iter().enumerate() {
        let item = store.add_inbox_item(n).await.unwrap();
        assert_eq!(item.seq, i as u64 + 1, "seq counts up per user");
        assert_eq!(&item.item, n);
        added.push(item);
    }
    let again = store.add_inbox_item(&news[2]).await.unwrap();
    assert_eq!(again, added[2], "a repeated delivery adds nothing");
    assert_eq!(store.add_inbox_item(&new(&bob, 9)).await.unwrap().seq, 1);
    assert_eq!(
        store.inbox_counts(&ada).await.unwrap(),
        InboxCounts {
            unread: 5,
            unseen: 5,
            last_seq: 5
        }
    );

    let all = InboxFilter {
        unread_only: false,
        archived: false,
    };
    let first = store.list_inbox(&ada, &all, None, 2).await.unwrap();
    let seqs =
        |items: &[crate::domain::inbox::InboxItem]| items.iter().map(|i| i.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&first.items), [5, 4], "newest first");
    let second = store
        .list_inbox(&ada, &all, first.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(seqs(&second.items), [3, 2]);
    let third = store
        .list_inbox(&ada, &all, second.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(seqs(&third.items), [1]);
    assert_eq!(third.next_cursor, None);
    assert!(matches!(
        store.list_inbox(&ada, &all, Some("nope"), 2).await,
        Err(StoreError::BadCursor)
    ));

    let at = t0() + SignedDuration::from_secs(60);
    let id = |i: usize| &added[i].item.notification_id;
    let read = store
        .mark_inbox_item(&ada, id(1), InboxMark::Read, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.read_at, read.seen_at), (Some(at), Some(at)));
    assert_eq!(
        store
            .mark_inbox_item(&bob, id(1), InboxMark::Read, at)
            .await
            .unwrap(),
        None,
        "one user cannot mark another's item"
    );
    store
        .mark_inbox_item(&ada, id(0), InboxMark::Archived, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.inbox_counts(&ada).await.unwrap(),
        InboxCounts {
            unread: 3,
            unseen: 3,
            last_seq: 5
        }
    );
    let unread = InboxFilter {
        unread_only: true,
        archived: false,
    };
    let page = store.list_inbox(&ada, &unread, None, 10).await.unwrap();
    assert_eq!(seqs(&page.items), [5, 4, 3]);
    let archived = InboxFilter {
        unread_only: false,
        archived: true,
    };
    let page = store.list_inbox(&ada, &archived, None, 10).await.unwrap();
    assert_eq!(seqs(&page.items), [1]);

    assert_eq!(
        store
            .mark_all_inbox(&ada, InboxMark::Seen, at)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store.inbox_counts(&ada).await.unwrap(),
        InboxCounts {
            unread: 3,
            unseen: 0,
            last_seq: 5
        }
    );
    assert_eq!(
        store
            .mark_all_inbox(&ada, InboxMark::Read, at)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .mark_all_inbox(&ada, InboxMark::Read, at)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.inbox_counts(&ada).await.unwrap(),
        InboxCounts {
            unread: 0,
            unseen: 0,
            last_seq: 5
        }
    );
    let unmarked = store
        .mark_inbox_item(&ada, id(4), InboxMark::Unread, at)
        .await
        .unwrap()
        .unwrap();
    assert!(unmarked.is_unread());
    assert_eq!(
        store.inbox_counts(&ada).await.unwrap(),
        InboxCounts {
            unread: 1,
            unseen: 0,
            last_seq: 5
        }
    );
    assert_eq!(
        store.inbox_counts(&bob).await.unwrap(),
        InboxCounts {
            unread: 1,
            unseen: 1,
            last_seq: 1
        }
    );

    let since = store.inbox_since(&ada, 2, 2).await.unwrap();
    assert_eq!(seqs(&since), [3, 4], "oldest first after the given seq");
    assert_eq!(
        seqs(&store.inbox_since(&ada, 0, 10).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert!(store.inbox_since(&ada, 5, 10).await.unwrap().is_empty());
}

async fn categories_and_preferences(store: &dyn Store) {
    let security = CategoryId::parse("security").unwrap();
    assert_eq!(store.get_category(&security).await.unwrap(), None);
    let category = Category {
        id: security.clone(),
        transactional: true,
        description: Some("password resets".into()),
    };
    store.put_category(&category).await.unwrap();
    assert_eq!(store.get_category(&security).await.unwrap(), Some(category));
    assert!(store.delete_category(&security).await.unwrap());
    assert!(!store.delete_category(&security).await.unwrap());

    let (ada, bob, eve) = (
        UserId::parse("pref-ada").unwrap(),
        UserId::parse("pref-bob").unwrap(),
        UserId::parse("pref-eve").unwrap(),
    );
    let news = CategoryId::parse("newsletter").unwrap();
    let tips = CategoryId::parse("tips:weekly").unwrap();
    assert_eq!(
        store.get_preferences(&ada).await.unwrap(),
        Preferences::default()
    );
    let mut wanted = Preferences::default();
    wanted.categories.insert(
        news.clone(),
        [(Channel::Email, false), (Channel::Sms, true)].into(),
    );
    wanted
        .categories
        .insert(tips.clone(), [(Channel::Sms, false)].into());
    store.put_preferences(&ada, &wanted).await.unwrap();
    assert_eq!(store.get_preferences(&ada).await.unwrap(), wanted);

    // One switch changes; the others stay. Each write says whether it changed anything (a
    // channel never set is on): a link clicked twice is one unsubscribe.
    assert!(
        store
            .set_preference(&bob, &news, Channel::Sms, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_preference(&bob, &news, Channel::Sms, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_preference(&bob, &news, Channel::Email, true)
            .await
            .unwrap()
    );
    let mut found = store
        .find_opt_outs(&news, &[ada.clone(), bob.clone(), eve.clone()])
        .await
        .unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![(ada.clone(), Channel::Email), (bob.clone(), Channel::Sms)]
    );
    assert_eq!(
        store
            .find_opt_outs(&tips, std::slice::from_ref(&ada))
            .await
            .unwrap(),
        vec![(ada.clone(), Channel::Sms)]
    );

    // A PUT replaces: a category left out is on again.
    let mut less = Preferences::default();
    less.categories
        .insert(tips.clone(), [(Channel::Sms, true)].into());
    store.put_preferences(&ada, &less).await.unwrap();
    assert_eq!(store.get_preferences(&ada).await.unwrap(), less);
    assert!(
        store
            .find_opt_outs(&news, std::slice::from_ref(&ada))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn suppressions(store: &dyn Store) {
    let address = |a: &str| SuppressedAddress::parse(a).unwrap();
    let suppression = |a: &str, reason| Suppression {
        address: address(a),
        reason,
        created_at: t0(),
    };
    assert_eq!(
        store
            .get_suppression(&address("x@example.com"))
            .await
            .unwrap(),
        None
    );
    let mut made = Vec::new();
    for i in 0..5 {
        let s = suppression(&format!("s{i}@example.com"), SuppressionReason::Bounce);
        store.put_suppression(&s).await.unwrap();
        made.push(s);
    }
    let phone = suppression("+821012345678", SuppressionReason::SmsOptOut);
    store.put_suppression(&phone).await.unwrap();
    // A second put replaces the reason and the time.
    let again = Suppression {
        reason: SuppressionReason::Complaint,
        created_at: t0() + SignedDuration::from_secs(5),
        ..made[0].clone()
    };
    store.put_suppression(&again).await.unwrap();
    assert_eq!(
        store.get_suppression(&again.address).await.unwrap(),
        Some(again.clone())
    );

    let mut asked: Vec<SuppressedAddress> = (0..150)
        .map(|i| address(&format!("n{i}@example.com")))
        .collect();
    asked.push(address("s1@example.com"));
    asked.push(address("+821012345678"));
    asked.push(address("s0@example.com"));
    let mut found = store.find_suppressions(&asked).await.unwrap();
    found.sort_by(|a, b| a.address.as_str().cmp(b.address.as_str()));
    assert_eq!(found, vec![phone.clone(), again.clone(), made[1].clone()]);
    assert!(store.find_suppressions(&[]).await.unwrap().is_empty());

    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_suppressions(4, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 4);
        listed.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let addresses: Vec<&str> = listed.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "+821012345678",
            "s0@example.com",
            "s1@example.com",
            "s2@example.com",
            "s3@example.com",
            "s4@example.com"
        ]
    );
    assert!(matches!(
        store.list_suppressions(4, Some("not a cursor")).await,
        Err(StoreError::BadCursor)
    ));

    assert!(store.delete_suppression(&phone.address).await.unwrap());
    assert!(!store.delete_suppression(&phone.address).await.unwrap());
    assert_eq!(store.get_suppression(&phone.address).await.unwrap(), None);
    for s in &made {
        store.delete_suppression(&s.address).await.unwrap();
    }
}

async fn api_keys(store: &dyn Store) {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    assert_eq!(store.list_api_keys().await.unwrap(), vec![]);
    let first = NewApiKey::generate("ci".into(), now);
    let second = NewApiKey::generate("backend".into(), now + SignedDuration::from_secs(1));
    store.put_api_key(&first.key).await.unwrap();
    store.put_api_key(&second.key).await.unwrap();
    let found = store
        .find_api_key(&secret_hash(&first.secret))
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&first.key));
    assert_eq!(
        store.find_api_key(&secret_hash("nk_wrong")).await.unwrap(),
        None
    );
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(
        listed,
        vec![first.key.clone(), second.key.clone()],
        "oldest first"
    );

    let used = now + SignedDuration::from_mins(5);
    store.touch_api_key(&first.key.hash, used).await.unwrap();
    let found = store.find_api_key(&first.key.hash).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(used));

    assert!(store.delete_api_key(&first.key.id).await.unwrap());
    assert!(!store.delete_api_key(&first.key.id).await.unwrap());
    assert_eq!(store.find_api_key(&first.key.hash).await.unwrap(), None);
    // A use recorded after the delete does not bring the key back.
    store.touch_api_key(&first.key.hash, used).await.unwrap();
    assert_eq!(store.find_api_key(&first.key.hash).await.unwrap(), None);
    assert_eq!(
        store.list_api_keys().await.unwrap(),
        vec![second.key.clone()]
    );
    assert!(store.delete_api_key(&second.key.id).await.unwrap());
}

async fn users_and_templates(store: &dyn Store) {
    let id = UserId::parse("contract-user").unwrap();
    assert_eq!(store.get_user(&id).await.unwrap(), None);
    let mut user = User {
        id: id.clone(),
        email: Some(EmailAddress::parse("u@example.com").unwrap()),
        phone: None,
        timezone: None,
        locale: Some("ko-KR".into()),
        channels: ChannelPrefs::default(),
    };
    store.put_user(&user).await.unwrap();
    assert_eq!(store.get_user(&id).await.unwrap().as_ref(), Some(&user));
    user.channels.sms = false;
    store.put_user(&user).await.unwrap();
    assert!(
        !store.get_user(&id).await.unwrap().unwrap().channels.sms,
        "put replaces"
    );
    // Token generations start at 0, go up one at a time, and outlive the user.
    assert_eq!(store.token_generation(&id).await.unwrap(), 0);
    assert_eq!(store.bump_token_generation(&id).await.unwrap(), 1);
    assert_eq!(store.bump_token_generation(&id).await.unwrap(), 2);
    assert_eq!(store.token_generation(&id).await.unwrap(), 2);
    assert!(store.delete_user(&id).await.unwrap());
    assert!(!store.delete_user(&id).await.unwrap());
    assert_eq!(store.get_user(&id).await.unwrap(), None);
    assert_eq!(store.token_generation(&id).await.unwrap(), 2);

    let t = Template {
        id: TemplateId::parse("contract-t").unwrap(),
        parts: Parts {
            sms: Some("{{ x }}".into()),
            ..Default::default()
        },
    };
    store.put_template(&t).await.unwrap();
    assert_eq!(store.get_template(&t.id).await.unwrap().as_ref(), Some(&t));
    assert!(store.delete_template(&t.id).await.unwrap());
    assert_eq!(store.get_template(&t.id).await.unwrap(), None);
}

async fn groups(store: &dyn Store) {
    let g = GroupId::parse("contract-group").unwrap();
    assert_eq!(store.get_group(&g).await.unwrap(), None);
    let created = store.put_group(&g, "Weekly digest").await.unwrap();
    assert_eq!(
        (created.name.as_str(), created.member_count),
        ("Weekly digest", 0)
    );
    let users: Vec<UserId> = (0..25)
        .map(|i| UserId::parse(&format!("m{i:02}")).unwrap())
        .collect();
    for u in &users {
        let user = User {
            id: u.clone(),
            email: Some(EmailAddress::parse("m@example.com").unwrap()),
            phone: None,
            timezone: None,
            locale: None,
            channels: ChannelPrefs::default(),
        };
        store.put_user(&user).await.unwrap();
    }
    assert_eq!(store.add_members(&g, &users[..20]).await.unwrap(), 20);
    assert_eq!(
        store.add_members(&g, &users[10..]).await.unwrap(),
        5,
        "existing memberships are kept, not counted"
    );
    assert_eq!(store.get_group(&g).await.unwrap().unwrap().member_count, 25);
    assert_eq!(
        store.put_group(&g, "Renamed").await.unwrap().member_count,
        25,
        "a rename keeps the members"
    );

    // Pages cover every member once, in a stable order.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_members(&g, 7, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, users);
    assert_eq!(seen.len(), 25);

    // The segments part the members: each is in the segment `member_segment` names, once.
    let segments = store.member_segments();
    assert!(segments >= 1);
    let mut in_segments = Vec::new();
    for segment in 0..segments {
        let mut cursor = None;
        loop {
            let page = store
                .list_segment(&g, segment, 3, cursor.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 3);
            for u in &page.items {
                assert_eq!(
                    crate::domain::group::member_segment(u, segments),
                    segment,
                    "{u} in the wrong segment"
                );
            }
            in_segments.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    in_segments.sort();
    assert_eq!(in_segments, users, "every member in exactly one segment");

    let found = store
        .get_users(&[
            users[0].clone(),
            UserId::parse("nobody-here").unwrap(),
            users[1].clone(),
        ])
        .await
        .unwrap();
    let mut ids: Vec<_> = found.into_iter().map(|u| u.id).collect();
    ids.sort();
    assert_eq!(ids, users[..2]);

    assert_eq!(
        store
            .remove_members(
                &g,
                &[users[0].clone(), UserId::parse("not-a-member").unwrap()]
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.remove_members(&g, &[users[0].clone()]).await.unwrap(),
        0
    );
    // Deleting a user removes their memberships.
    assert!(store.delete_user(&users[1]).await.unwrap());
    let g2 = store.get_group(&g).await.unwrap().unwrap();
    assert_eq!(g2.member_count, 23);
    let all = store.list_members(&g, 1000, None).await.unwrap();
    assert!(!all.items.contains(&users[0]) && !all.items.contains(&users[1]));
    assert_eq!(all.items.len(), 23);

    assert!(store.delete_group(&g).await.unwrap());
    assert_eq!(store.get_group(&g).await.unwrap(), None, "gone at once");
    // Its memberships go at once or by purging, a page at a time.
    let mut pages = 0;
    while !store.purge_group(&g, 10).await.unwrap() {
        pages += 1;
        assert!(pages < 10, "the purge ends");
    }
    assert!(
        store
            .list_members(&g, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(!store.delete_group(&g).await.unwrap());
    for u in &users {
        store.delete_user(u).await.unwrap();
    }
}

async fn idempotency(store: &dyn Store) {
    let key = IdempotencyKey::parse("contract-key").unwrap();
    let n1 = notification(t0(), Status::Queued);
    let record = |n: &Notification, expires_at| IdempotencyRecord {
        key: key.as_str().to_owned(),
        request_hash: "h".into(),
        notification_id: n.id.clone(),
        response: serde_json::json!({"id": n.id}),
        expires_at,
    };
    let expires = t0() + SignedDuration::from_hours(24);
    assert!(store.find_idempotency(&key, t0()).await.unwrap().is_none());
    assert!(matches!(
        store
            .insert_notification(&n1, Some(&record(&n1, expires)), t0())
            .await
            .unwrap(),
        InsertOutcome::Inserted
    ));
    assert_eq!(
        store.find_idempotency(&key, t0()).await.unwrap(),
        Some(record(&n1, expires))
    );
    // A second insert with the same live key stores nothing and hands back the first record.
    let n2 = notification(t0(), Status::Queued);
    match store
        .insert_notification(&n2, Some(&record(&n2, expires)), t0())
        .await
        .unwrap()
    {
        InsertOutcome::KeyTaken(existing) => assert_eq!(existing.notification_id, n1.id),
        InsertOutcome::Inserted => panic!("the key was live"),
    }
    assert!(store.get_notification(&n2.id).await.unwrap().is_none());
    // Expired: invisible, and replaced by the next insert.
    let later = expires + SignedDuration::from_secs(1);
    assert!(store.find_idempotency(&key, later).await.unwrap().is_none());
    let n3 = notification(later, Status::Queued);
    let r3 = record(&n3, later + SignedDuration::from_hours(24));
    assert!(matches!(
        store
            .insert_notification(&n3, Some(&r3), later)
            .await
            .unwrap(),
        InsertOutcome::Inserted
    ));
    assert_eq!(
        store
            .find_idempotency(&key, later)
            .await
            .unwrap()
            .unwrap()
            .notification_id,
        n3.id
    );
}

async fn notifications(store: &dyn Store) {
    let base = t0() + SignedDuration::from_hours(1000);
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = notification(
            base + SignedDuration::from_secs(i),
            if i % 2 == 0 {
                Status::Scheduled
            } else {
                Status::Queued
            },
        );
        store.insert_notification(&n, None, base).await.unwrap();
        assert_eq!(
            store.get_notification(&n.id).await.unwrap().as_ref(),
            Some(&n)
        );
        ids.push(n.id);
    }
    // Newest first, page by page.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_notifications(None, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|n| n.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mine: Vec<_> = seen.iter().filter(|id| ids.contains(id)).cloned().collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(mine, expected);
    let scheduled = store
        .list_notifications(Some(Status::Scheduled), 1000, None)
        .await
        .unwrap();
    assert!(
        scheduled
            .items
            .iter()
            .all(|n| n.status == Status::Scheduled)
    );
    assert_eq!(
        scheduled
            .items
            .iter()
            .filter(|n| ids.contains(&n.id))
            .count(),
        3
    );
    assert!(matches!(
        store
            .list_notifications(None, 2, Some("not a cursor"))
            .await,
        Err(StoreError::BadCursor)
    ));

    // Conditional moves.
    let id = &ids[0];
    let later = base + SignedDuration::from_hours(5);
    assert!(store.set_send_at(id, later).await.unwrap());
    assert_eq!(
        store.get_notification(id).await.unwrap().unwrap().send_at,
        later
    );
    assert!(
        !store
            .transition(id, &[Status::Queued], Status::Sending)
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(id, &[Status::Scheduled, Status::Queued], Status::Sending)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition(id, &[Status::Scheduled], Status::Cancelled)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_notification(id).await.unwrap().unwrap().status,
        Status::Sending
    );
    assert!(
        !store.set_send_at(id, base).await.unwrap(),
        "only while scheduled"
    );
    let unknown = NotificationId::generate(base);
    assert!(
        !store
            .transition(&unknown, &[Status::Queued], Status::Sending)
            .await
            .unwrap()
    );
    assert!(store.get_notification(&unknown).await.unwrap().is_none());
}

async fn deliveries(store: &dyn Store) {
    let now = t0() + SignedDuration::from_hours(2000);
    let n = notification(now, Status::Queued);
    store.insert_notification(&n, None, now).await.unwrap();
    assert!(
        store
            .transition(&n.id, &[Status::Queued], Status::Sending)
            .await
            .unwrap()
    );
    let recipients: Vec<Recipient> = (0..5)
        .map(|i| Recipient::email(EmailAddress::parse(&format!("r{i}@example.com")).unwrap()))
        .collect();
    let mut rows: Vec<Delivery> = recipients
        .iter()
        .map(|r| Delivery::pending(&n.id, r, Channel::Email))
        .collect();
    rows.push(Delivery::skipped(
        &n.id,
        &recipients[0],
        Channel::Sms,
        "the recipient has no phone number",
    ));
    let all = [Channel::Email, Channel::Sms];
    assert!(
        store
            .fanned_out_page(&n.id, "", &all)
            .await
            .unwrap()
            .is_none()
    );
    let member = |id: &str, pending: &[Channel]| PageMember {
        id: UserId::parse(id).unwrap(),
        pending: pending.to_vec(),
    };
    let record = FannedOutPage {
        members: vec![
            member("m1", &all),
            member("m2", &[]),
            member("m3", &[Channel::Sms]),
        ],
        next_cursor: Some("after-m2".into()),
    };
    assert!(
        store
            .insert_deliveries(&n.id, "", &record, &all, &rows)
            .await
            .unwrap()
    );
    // The same page again (a fanout job delivered twice, or run again with the group changed)
    // changes nothing, and the first record stands.
    assert!(
        !store
            .insert_deliveries(&n.id, "", &FannedOutPage::default(), &all, &rows[..2])
            .await
            .unwrap()
    );
    assert_eq!(
        store.fanned_out_page(&n.id, "", &all).await.unwrap(),
        Some(record)
    );
    assert!(
        store
            .fanned_out_page(&n.id, "other", &all)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.counts(&n.id).await.unwrap(),
        Counts {
            recipients: 6,
            pending: 5,
            sent: 0,
            failed: 0,
            skipped: 1,
            ..Counts::default()
        }
    );

    let key = |i: usize| DeliveryKey {
        notification_id: n.id.clone(),
        recipient: recipients[i].key.clone(),
        channel: Channel::Email,
    };
    let planned = |i: usize| Delivery::pending(&n.id, &recipients[i], Channel::Email);
    let lease = now + SignedDuration::from_secs(60);
    assert_eq!(
        store.claim_delivery(&planned(0), now, lease).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    assert_eq!(
        store.claim_delivery(&planned(0), now, lease).await.unwrap(),
        Claim::Busy
    );
    // An expired lease is taken over.
    let after = lease + SignedDuration::from_secs(1);
    assert_eq!(
        store
            .claim_delivery(&planned(0), after, after + SignedDuration::from_secs(60))
            .await
            .unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    store
        .record_outcome(
            &key(0),
            &Outcome::Sent {
                provider_message_id: "p0".into(),
                at: after,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_delivery(&planned(0), after, lease)
            .await
            .unwrap(),
        Claim::Done
    );

    // Retry releases the lease at once and keeps the attempt count.
    assert_eq!(
        store.claim_delivery(&planned(1), now, lease).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    store
        .record_outcome(
            &key(1),
            &Outcome::Retry {
                error: "421".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim_delivery(&planned(1), now, lease).await.unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    store
        .record_outcome(
            &key(1),
            &Outcome::Failed {
                error: "550 no such user".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim_delivery(&rows[5], now, lease).await.unwrap(),
        Claim::Done,
        "skipped is final"
    );

    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        None,
        "not fanned out yet"
    );
    // Split into three segments: fanned out once all three are, each recorded any number of
    // times (segment 1 comes below, once nothing is pending).
    let segment = |index| Some(crate::jobs::Segment { index, of: 3 });
    for index in [0, 2, 0, 2] {
        store.mark_fanned_out(&n.id, segment(index)).await.unwrap();
    }
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        None,
        "still pending"
    );
    for i in 2..5 {
        assert!(matches!(
            store.claim_delivery(&planned(i), now, lease).await.unwrap(),
            Claim::Claimed { .. }
        ));
        let outcome = if i == 4 {
            Outcome::Skipped {
                reason: "suppressed: bounce".into(),
            }
        } else {
            Outcome::Sent {
                provider_message_id: format!("p{i}"),
                at: now,
            }
        };
        store.record_outcome(&key(i), &outcome).await.unwrap();
    }
    assert_eq!(
        store.counts(&n.id).await.unwrap(),
        Counts {
            recipients: 6,
            pending: 0,
            sent: 3,
            failed: 1,
            skipped: 2,
            ..Counts::default()
        }
    );
    let page = store.list_deliveries(&n.id, 10, None).await.unwrap();
    let skipped = page
        .items
        .iter()
        .find(|d| d.key == key(4))
        .expect("the skipped delivery is listed");
    assert_eq!(skipped.status, DeliveryStatus::Skipped);
    assert_eq!(skipped.error.as_deref(), Some("suppressed: bounce"));
    assert_eq!(
        store.claim_delivery(&planned(4), now, lease).await.unwrap(),
        Claim::Done,
        "a delivery skipped at dispatch is final"
    );
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        None,
        "nothing pending, but two segments of three fanned out"
    );
    store.mark_fanned_out(&n.id, segment(1)).await.unwrap();
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        Some(Status::PartiallyFailed)
    );
    assert_eq!(
        store.get_notification(&n.id).await.unwrap().unwrap().status,
        Status::PartiallyFailed
    );
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        None,
        "finishes once"
    );

    // Pages of deliveries cover every row once.
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_deliveries(&n.id, 4, cursor.as_deref())
            .await
            .unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all.len(), 6);
    let first = all.iter().find(|d| d.key == key(0)).unwrap();
    assert_eq!(
        (
            first.status,
            first.attempts,
            first.provider_message_id.as_deref()
        ),
        (DeliveryStatus::Sent, 2, Some("p0"))
    );
    assert_eq!(first.sent_at, Some(after));
    assert_eq!(first.address.as_deref(), Some("r0@example.com"));
    let failed = all.iter().find(|d| d.key == key(1)).unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (DeliveryStatus::Failed, Some("550 no such user"))
    );
    let skipped = all.iter().find(|d| d.key.channel == Channel::Sms).unwrap();
    assert_eq!(
        (skipped.status, skipped.address.as_deref()),
        (DeliveryStatus::Skipped, None)
    );
    assert!(matches!(
        store.list_deliveries(&n.id, 4, Some("%%%")).await,
        Err(StoreError::BadCursor)
    ));

    // A retry reopens only the failed delivery: attempts from zero, counts moved back.
    assert!(
        !store.reopen_failed(&key(0)).await.unwrap(),
        "a sent delivery stays sent"
    );
    assert!(
        !store.reopen_failed(&rows[5].key).await.unwrap(),
        "a skipped delivery stays skipped"
    );
    assert!(store.begin_retry(&n.id).await.unwrap());
    assert!(
        !store.begin_retry(&n.id).await.unwrap(),
        "one retry at a time"
    );
    assert!(store.reopen_failed(&key(1)).await.unwrap());
    assert!(
        !store.reopen_failed(&key(1)).await.unwrap(),
        "reopened once"
    );
    assert_eq!(
        store.counts(&n.id).await.unwrap(),
        Counts {
            recipients: 6,
            pending: 1,
            sent: 3,
            failed: 0,
            skipped: 2,
            ..Counts::default()
        }
    );
    assert_eq!(
        store.claim_delivery(&planned(1), now, lease).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    store
        .record_outcome(
            &key(1),
            &Outcome::Sent {
                provider_message_id: "p1".into(),
                at: now,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        None,
        "not through all the deliveries yet"
    );
    store.mark_fanned_out(&n.id, None).await.unwrap();
    assert_eq!(
        store.finish_if_done(&n.id).await.unwrap(),
        Some(Status::Completed)
    );

    // The provider's later reports: for the message sent, once, forwards only.
    let report = |k: usize, pid: &'static str, to| {
        let key = key(k);
        async move { store.record_feedback(&key, pid, to).await.unwrap() }
    };
    assert!(
        !report(0, "p-other", DeliveryStatus::Delivered).await,
        "another message's report"
    );
    assert!(report(0, "p0", DeliveryStatus::Delivered).await);
    assert!(
        !report(0, "p0", DeliveryStatus::Delivered).await,
        "counted once"
    );
    assert!(report(1, "p1", DeliveryStatus::Bounced).await);
    assert!(
        !report(1, "p1", DeliveryStatus::Delivered).await,
        "a bounce is final"
    );
    assert!(report(0, "p0", DeliveryStatus::Complained).await);
    assert!(
        !store
            .record_feedback(&rows[5].key, "p0", DeliveryStatus::Delivered)
            .await
            .unwrap(),
        "a skipped delivery was never sent"
    );
    let c = store.counts(&n.id).await.unwrap();
    assert_eq!(
        (c.recipients, c.sent, c.delivered, c.bounced, c.complained),
        (6, 2, 0, 1, 1)
    );
    let all = store.list_deliveries(&n.id, 10, None).await.unwrap().items;
    let status = |k: usize| all.iter().find(|d| d.key == key(k)).unwrap().status;
    assert_eq!(
        (status(0), status(1)),
        (DeliveryStatus::Complained, DeliveryStatus::Bounced)
    );
}
