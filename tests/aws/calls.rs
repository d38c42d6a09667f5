//! The simulated AWS benchmark (`aws_simulated`, over `notify_tests::sim`) prints the AWS calls
//! and the cost of a send from adapters that stand for the real ones. This pins them to the
//! real ones: the same small group send goes through the real handlers on moto, with every
//! call the SDK clients make counted at the wire by the proxy in front of moto (retries
//! included), and through the simulated adapters; the counts of every operation must be equal.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use notify_aws::handlers::dispatch_event;
use notify_aws::wiring;
use notify_core::domain::notification::{Content, Target};
use notify_core::domain::template::Parts;
use notify_core::domain::user::{ChannelPrefs, User};
use notify_core::domain::{Channel, EmailAddress, GroupId, SendAt, UserId};
use notify_core::memory::{MemoryStore, RecordingSms};
use notify_core::ports::{GroupStore, SystemClock, UserStore};
use notify_core::services::accept::NewNotification;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use notify_core::services::unsubscribe::UnsubscribeLinks;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use notify_tests::sim::{Latency, SimEmail, SimQueues, SimSigningKey, SimStore};

const MEMBERS: usize = 120;
/// Small pages and jobs, so that the send has several of each.
const PAGE: usize = 50;
const PER_JOB: usize = 20;
const FROM: &str = "news@example.com";

fn uid(i: usize) -> String {
    format!("p{i:03}")
}

fn address(i: usize) -> String {
    format!("{}@example.org", uid(i))
}

/// The calls of the send through the real handlers, by `service.Operation`.
async fn real_calls() -> BTreeMap<String, u64> {
    let mut w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        ..WorldOptions::default()
    })
    .await;
    w.config.fanout_page_size = PAGE;
    w.config.recipients_per_job = PER_JOB;
    w.config.email_from = FROM.into();
    // The simulation reads the endpoints once (its clock hardly moves); on moto the dispatch
    // part alone can outlast the 30 s a function trusts its list.
    w.config.webhook_cache_secs = 3600;
    let api = ApiHandler::new(&w);
    futures::stream::iter(0..MEMBERS)
        .map(|i| {
            let mut api = api.clone();
            async move {
                let put = api_event(
                    "api-put-user.json",
                    Some(&format!("/v1/users/{}", uid(i))),
                    Some(json!({"email": address(i)})),
                );
                assert_eq!(api.call(put).await.status, 200);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let mut api = api.clone();
    let group = api_event(
        "api-put-user.json",
        Some("/v1/groups/pin"),
        Some(json!({"name": "Pin"})),
    );
    assert_eq!(api.call(group).await.status, 200);
    let ids: Vec<String> = (0..MEMBERS).map(uid).collect();
    let add = api_event(
        "api-post-notification-now.json",
        Some("/v1/groups/pin/members"),
        Some(json!({"add": ids})),
    );
    assert_eq!(api.call(add).await.status, 200);

    let proxy = w.proxy.as_ref().expect("a world with the proxy");
    let before = proxy.report().await["calls"].clone();
    let send = api_event(
        "api-post-notification-now.json",
        None,
        Some(json!({"to": {"group_id": "pin"}, "content": {"subject": "News", "text": "Hello"}})),
    );
    let a = api.call(send).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    w.run_fanout().await;
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    // One message at a time here and in the simulation: two jobs that finish at once may both
    // find nothing pending and both try the final status (one conditional write fails), which
    // would make the count depend on timing.
    loop {
        let e = w.receive_event(&w.config.dispatch_queue_url, 1).await;
        if e.records.is_empty() {
            break;
        }
        let r = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        w.settle(&w.config.dispatch_queue_url, &e, &r).await;
    }
    let after = proxy.report().await["calls"].clone();
    assert_eq!(
        w.moto.raw_emails().await.len(),
        MEMBERS,
        "every member got the email"
    );

    let mut calls = BTreeMap::new();
    // The event source mapping's receives and deletes are AWS's, not the functions'.
    let esm = ["sqs.ReceiveMessage", "sqs.DeleteMessage"];
    for (op, n) in after
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| !esm.contains(&op.as_str()))
    {
        let n = n.as_u64().unwrap() - before.get(op).and_then(|v| v.as_u64()).unwrap_or(0);
        if n > 0 {
            calls.insert(op.clone(), n);
        }
    }
    calls
}

/// The calls of the same send through the simulated adapters, named as the proxy names them.
async fn simulated_calls() -> BTreeMap<String, u64> {
    // Memberships in segments, as in the DynamoDB table.
    let memory = MemoryStore::with_member_segments(notify_aws::store::MEMBER_SEGMENTS);
    let group = GroupId::parse("pin").unwrap();
    memory.put_group(&group, "Pin").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..MEMBERS {
        let id = UserId::parse(&uid(i)).unwrap();
        let user = User {
            id: id.clone(),
            email: Some(EmailAddress::parse(&address(i)).unwrap()),
            phone: None,
            timezone: None,
            locale: None,
            channels: ChannelPrefs::default(),
        };
        memory.put_user(&user).await.unwrap();
        ids.push(id);
    }
    memory.add_members(&group, &ids).await.unwrap();

    let store = Arc::new(SimStore::new(memory, Latency::NONE));
    let (queues, mut fanout_rx, dispatch_rx) = SimQueues::new(Latency::NONE, true);
    let mut dispatch_rx = dispatch_rx.unwrap();
    let email = Arc::new(SimEmail {
        latency: Latency::NONE,
        calls: Default::default(),
    });
    let app = queues.app(store.clone());
    let key = Arc::new(SimSigningKey::default());
    let fanout = Fanout {
        store: store.clone(),
        queues: queues.clone(),
        clock: Arc::new(SystemClock),
        settings: FanoutSettings {
            page_size: PAGE,
            recipients_per_job: PER_JOB,
            ..FanoutSettings::default()
        },
    };
    let dispatch = Dispatch::new(
        store.clone(),
        email.clone(),
        Arc::new(RecordingSms::default()),
        Arc::new(SystemClock),
        DispatchSettings::new(EmailAddress::parse(FROM).unwrap()),
    )
    .with_unsubscribe(Arc::new(UnsubscribeLinks::new(
        key.clone(),
        "https://notify.example",
    )))
    .with_webhooks(app.webhooks.clone());
    let request = NewNotification {
        to: Target::GroupId(group),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("News".into()),
            text: Some("Hello".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: None,
    };
    app.accept(request, None).await.unwrap();
    while let Ok(job) = fanout_rx.try_recv() {
        fanout.handle(&job).await.unwrap();
    }
    while let Ok(job) = dispatch_rx.try_recv() {
        dispatch.handle(&job).await.unwrap();
    }

    let mut calls = BTreeMap::new();
    let named = store
        .calls
        .snapshot()
        .into_iter()
        .chain(queues.calls.snapshot())
        .chain(email.calls.snapshot())
        .chain(key.calls.snapshot());
    for (op, n) in named {
        let op = match op.split_once(' ') {
            Some(("SQS", op)) => format!("sqs.{op}"),
            Some(("SES", op)) => format!("ses.{op}"),
            Some(("SecretsManager", op)) => format!("secretsmanager.{op}"),
            // "BatchGetItem (counts)" is a BatchGetItem like any other on the wire.
            _ => format!("dynamodb.{}", op.split(' ').next().unwrap()),
        };
        *calls.entry(op).or_default() += n;
    }
    calls.retain(|_, n| *n > 0);
    calls
}

#[tokio::test]
async fn the_simulated_benchmark_makes_the_calls_the_aws_adapters_make() {
    let real = real_calls().await;
    let simulated = simulated_calls().await;
    eprintln!("real: {real:?}\nsimulated: {simulated:?}");
    assert_eq!(simulated, real);
}
