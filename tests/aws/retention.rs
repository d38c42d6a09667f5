//! Retention on AWS: every item of a send carries `ttl` (the table's TTL attribute, seconds),
//! its last change plus `RetentionDays`, or for a reserved send its `send_at` plus that; an
//! inbox item gets one only once no count holds it (read and seen, or archived), so a TTL
//! delete never leaves the counts wrong. moto does not run TTL deletes: what is tested is
//! what DynamoDB acts on.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::{SignedDuration, Timestamp};
use notify_aws::store::DynamoStore;
use notify_core::domain::inbox::InboxMark;
use notify_core::domain::{NotificationId, UserId};
use notify_core::ports::InboxStore;
use notify_core::retention::Retention;
use notify_tests::aws::{ApiHandler, AwsWorld};
use serde_json::json;

use crate::suppressions::call;

type Item = HashMap<String, AttributeValue>;

async fn scan(w: &AwsWorld) -> Vec<Item> {
    let client = aws_sdk_dynamodb::Client::new(&w.direct);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&w.config.table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item[name].as_s().unwrap()
}

fn ttl(item: &Item) -> Option<Timestamp> {
    item.get("ttl")
        .map(|v| Timestamp::from_second(v.as_n().unwrap().parse().unwrap()).unwrap())
}

/// `ttl` is `at` plus seven days, give or take the test's own duration.
fn expires_seven_days_after(item: &Item, at: Timestamp) {
    let expected = at + SignedDuration::from_hours(7 * 24);
    let got = ttl(item).unwrap_or_else(|| panic!("no ttl on {item:?}"));
    assert!(
        got.duration_since(expected).abs() < SignedDuration::from_secs(120),
        "ttl {got} for {expected}: {item:?}"
    );
}

#[tokio::test]
async fn every_item_of_a_send_expires_after_the_retention_and_counted_inbox_items_never() {
    let mut w = AwsWorld::start().await;
    w.config.retention = Retention::days(7).unwrap();
    let mut api = ApiHandler::new(&w);
    let (status, body) = call(
        &mut api,
        "PUT",
        "/v1/users/ada",
        Some(json!({"email": "ada@example.org"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, now) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(
            json!({"to": {"user_id": "ada"}, "channels": ["email", "in_app"],
                    "content": {"subject": "s", "text": "t", "in_app": {"body": "b"}}}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{now}");
    let send_at = Timestamp::now() + SignedDuration::from_hours(48);
    let (status, later) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"user_id": "ada"}, "send_at": send_at.round(jiff::Unit::Second).unwrap().to_string(),
                    "content": {"subject": "s", "text": "t"}})),
    )
    .await;
    assert_eq!(status, 202, "{later}");
    let dispatch = notify_aws::wiring::dispatch(&w.config, &w.sdk).unwrap();
    let id = now["id"].as_str().unwrap();
    let (n, _) = crate::faults::run_until_final(&w, &mut api, &dispatch, id).await;
    assert_eq!(n["status"], "completed", "{n}");

    let started = Timestamp::now();
    let items = scan(&w).await;
    let mut kinds = HashMap::<&str, usize>::new();
    for item in &items {
        let pk = text(item, "PK");
        let sk = text(item, "SK");
        let kind = match (pk.split('#').next().unwrap(), sk.split('#').next().unwrap()) {
            ("N", "N") if pk.contains(later["id"].as_str().unwrap()) => {
                expires_seven_days_after(item, send_at.round(jiff::Unit::Second).unwrap());
                "reserved notification"
            }
            ("N", "N") => "notification",
            ("N", "P") => "page marker",
            ("D", _) => "delivery",
            ("C", _) => "count",
            ("B", "H") => {
                assert_eq!(ttl(item), None, "the inbox head stays");
                continue;
            }
            ("B", "I") => {
                assert_eq!(ttl(item), None, "an unread item stays: {item:?}");
                continue;
            }
            ("B", "G") => "inbox guard",
            _ => continue,
        };
        if kind != "reserved notification" {
            expires_seven_days_after(item, started);
        }
        *kinds.entry(kind).or_default() += 1;
    }
    for kind in [
        "notification",
        "reserved notification",
        "page marker",
        "delivery",
        "count",
        "inbox guard",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} item seen: {kinds:?}");
    }
    assert_eq!(kinds["delivery"], 2, "email and in_app: {kinds:?}");

    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&w.direct), &w.config.table)
        .with_retention(Retention::days(7).unwrap());
    let ada = UserId::parse("ada").unwrap();
    let ntf = NotificationId::parse(id).unwrap();
    let inbox_item = |items: &[Item]| {
        items
            .iter()
            .find(|i| text(i, "PK") == "B#ada" && text(i, "SK").starts_with("I#"))
            .cloned()
            .unwrap()
    };
    let mark = |m: InboxMark| store.mark_inbox_item(&ada, &ntf, m, Timestamp::now());
    // Read (which is seen too): in no count, so it expires.
    mark(InboxMark::Read).await.unwrap().unwrap();
    expires_seven_days_after(&inbox_item(&scan(&w).await), Timestamp::now());
    // Unread again: counted, kept again.
    mark(InboxMark::Unread).await.unwrap().unwrap();
    assert_eq!(ttl(&inbox_item(&scan(&w).await)), None);
    mark(InboxMark::Archived).await.unwrap().unwrap();
    expires_seven_days_after(&inbox_item(&scan(&w).await), Timestamp::now());
}
