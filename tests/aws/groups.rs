//! A 2,500-member group through the AWS handlers against moto: the send is split into one
//! fanout job per segment of the memberships, and with a page size and time budget small
//! enough, each segment's job continues itself through the queue. (The events of `events/`
//! serve as templates: a PUT event with another path is a PUT to that path.)

use std::collections::HashMap;

use futures::StreamExt;
use notify_aws::handlers::{dispatch_event, fanout_event};
use notify_aws::store::MEMBER_SEGMENTS;
use notify_aws::wiring;
use notify_core::domain::UserId;
use notify_core::domain::group::member_segment;
use notify_tests::aws::{ApiHandler, AwsWorld, api_event};
use serde_json::json;

const MEMBERS: usize = 2_500;
const UNSUBSCRIBED: usize = 3;
const NO_EMAIL: usize = 1_234;
const PAGE: usize = 40;

fn uid(i: usize) -> String {
    format!("m{i:04}")
}

#[tokio::test]
async fn a_2500_member_group_is_fanned_out_by_segments_each_continuing_itself_and_gets_one_email_each()
 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let started = std::time::Instant::now();
    let mut w = AwsWorld::start().await;
    w.config.fanout_page_size = PAGE;
    w.config.fanout_time_budget_secs = 0;
    // moto serializes writes and takes ~100 ms per transaction at this size: a message of 50
    // recipients beside 9 others takes longer than the 20 s a dispatch message gets on AWS.
    w.config.dispatch_time_budget_secs = 600;
    let api = ApiHandler::new(&w);
    futures::stream::iter(0..MEMBERS)
        .map(|i| {
            let mut api = api.clone();
            async move {
                let user = if i == NO_EMAIL {
                    json!({"phone": "+14155550100"})
                } else {
                    json!({"email": format!("{}@example.org", uid(i))})
                };
                let a = api
                    .call(api_event(
                        "api-put-user.json",
                        Some(&format!("/v1/users/{}", uid(i))),
                        Some(user),
                    ))
                    .await;
                assert_eq!(a.status, 200);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    eprintln!("users: {:?}", started.elapsed());
    let mut api = api.clone();
    let put_group = |path: &str, body| api_event("api-put-user.json", Some(path), Some(body));
    assert_eq!(
        api.call(put_group("/v1/groups/fans", json!({"name": "Fans"})))
            .await
            .status,
        200
    );
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|i| uid(*i)).collect();
        let a = api
            .call(api_event(
                "api-post-notification-now.json",
                Some("/v1/groups/fans/members"),
                Some(json!({"add": ids})),
            ))
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    eprintln!("members: {:?}", started.elapsed());
    let unsubscribe = api_event(
        "api-delete-user.json",
        Some(&format!("/v1/groups/fans/members/{}", uid(UNSUBSCRIBED))),
        None,
    );
    assert_eq!(api.call(unsubscribe).await.status, 204);
    let g = api
        .call(api_event(
            "api-get-user.json",
            Some("/v1/groups/fans"),
            None,
        ))
        .await;
    assert_eq!(g.body["member_count"], MEMBERS - 1);

    // The members' list walks the segments: every member once, in pages of 700 that end inside
    // segments.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/groups/fans/members?limit=700&cursor={c}"),
            None => "/v1/groups/fans/members?limit=700".to_owned(),
        };
        let page = api
            .call(api_event("api-get-user.json", Some(&path), None))
            .await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        for m in page.body["items"].as_array().unwrap() {
            listed.push(m.as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    listed.sort();
    let mut want: Vec<String> = (0..MEMBERS)
        .filter(|i| *i != UNSUBSCRIBED)
        .map(uid)
        .collect();
    want.sort();
    assert_eq!(listed, want);

    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(json!({"to": {"group_id": "fans"}, "content": {"subject": "News", "text": "Hello fans"}})),
        ))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();

    let fanout = wiring::fanout(&w.config, &w.sdk);
    let dispatch = wiring::dispatch(&w.config, &w.sdk).unwrap();
    let (mut splits, mut segment_starts, mut continuations) = (0, 0, 0);
    loop {
        let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
        if e.records.is_empty() {
            break;
        }
        let job: serde_json::Value =
            serde_json::from_str(e.records[0].body.as_deref().unwrap()).unwrap();
        match (job.get("segment"), job.get("cursor")) {
            (None, None) => splits += 1,
            (Some(s), None) => {
                assert_eq!(s["of"], MEMBER_SEGMENTS);
                segment_starts += 1;
            }
            (Some(_), Some(_)) => continuations += 1,
            (None, Some(_)) => panic!("a continuation outside a segment: {job}"),
        }
        let r = fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
        assert!(r.batch_item_failures.is_empty());
        w.settle(&w.config.fanout_queue_url, &e, &r).await;
    }
    // Each segment's job reads its members a page at a time, one page per run.
    let mut per_segment = vec![0usize; MEMBER_SEGMENTS as usize];
    for i in (0..MEMBERS).filter(|i| *i != UNSUBSCRIBED) {
        per_segment[member_segment(&UserId::parse(&uid(i)).unwrap(), MEMBER_SEGMENTS) as usize] +=
            1;
    }
    let pages: usize = per_segment.iter().map(|m| m.div_ceil(PAGE).max(1)).sum();
    assert_eq!(splits, 1);
    assert_eq!(
        segment_starts, MEMBER_SEGMENTS as usize,
        "a job per segment"
    );
    assert!(
        pages > MEMBER_SEGMENTS as usize,
        "some segments take several pages"
    );
    assert_eq!(continuations, pages - MEMBER_SEGMENTS as usize);

    eprintln!("fanout: {:?}", started.elapsed());
    let mut messages = 0;
    loop {
        let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
        if e.records.is_empty() {
            break;
        }
        messages += e.records.len();
        let r = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        w.settle(&w.config.dispatch_queue_url, &e, &r).await;
    }
    assert!(
        messages >= (MEMBERS - 2) / 50,
        "{messages} dispatch messages: many recipients each"
    );

    eprintln!("dispatch: {:?}", started.elapsed());
    let emails = w.moto.raw_emails().await;
    let mut per_address: HashMap<String, usize> = HashMap::new();
    for e in &emails {
        let to = e["destinations"][0].as_str().unwrap().to_owned();
        *per_address.entry(to).or_default() += 1;
    }
    for i in 0..MEMBERS {
        let want = usize::from(i != UNSUBSCRIBED && i != NO_EMAIL);
        assert_eq!(
            per_address
                .get(&format!("{}@example.org", uid(i)))
                .copied()
                .unwrap_or(0),
            want,
            "{}",
            uid(i)
        );
    }
    assert_eq!(emails.len(), MEMBERS - 2);
    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(n.body["status"], "completed", "{:?}", n.body);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": MEMBERS - 1, "pending": 0, "sent": MEMBERS - 2, "failed": 0, "skipped": 1, "delivered": 0, "bounced": 0, "complained": 0})
    );
}
