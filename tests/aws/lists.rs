//! Lists longer than one DynamoDB Query answer: a Query stops at 1 MB of items whatever its
//! `Limit`, with a `LastEvaluatedKey`. More than 1 MB of notifications and of deliveries must
//! all be listed, newest first, page by page, none twice.

use notify_core::ports::DeliveryStore;
use std::collections::HashSet;

use notify_aws::store::DynamoStore;
use notify_core::domain::delivery::{Delivery, Recipient};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::{Channel, EmailAddress, NotificationId};
use notify_tests::aws::{ApiHandler, AwsWorld, api_event};
use serde_json::{Value, json};

/// Every page of a list, following `next_cursor`.
async fn all_pages(
    api: &mut ApiHandler,
    event: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut e = api_event(event, Some(path), None);
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(c) = &cursor {
            params.push(("cursor".into(), c.clone()));
        }
        e["rawQueryString"] = json!(
            params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        e["queryStringParameters"] = json!(
            params
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>()
        );
        let page = api.call(e).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        pages += 1;
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_megabyte_of_notifications_and_deliveries_is_listed_in_full() {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    const N: usize = 300;
    let text = "x".repeat(4096);
    let mut ids = Vec::new();
    for i in 0..N {
        let body = json!({"to": {"email": format!("l{i}@example.org")}, "content": {"subject": format!("n{i}"), "text": text}});
        let a = api
            .call(api_event(
                "api-post-notification-now.json",
                None,
                Some(body),
            ))
            .await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    for limit in ["1000", "100", "7"] {
        let (items, pages) = all_pages(
            &mut api,
            "api-list-notifications.json",
            "/v1/notifications",
            &[("limit", limit)],
        )
        .await;
        let got: Vec<String> = items
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            got.len(),
            N,
            "limit {limit}: {} of {N} listed in {pages} pages",
            got.len()
        );
        assert_eq!(got, newest_first, "limit {limit}: newest first, each once");
    }
    let (queued, _) = all_pages(
        &mut api,
        "api-list-notifications.json",
        "/v1/notifications",
        &[("limit", "50"), ("status", "queued")],
    )
    .await;
    assert_eq!(queued.len(), N, "listed by status too");

    // 300 delivery rows of 4 KB each (skipped, with a long reason) for one notification.
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&w.sdk), &w.config.table);
    let id = NotificationId::parse(&ids[0]).unwrap();
    let deliveries: Vec<Delivery> = (0..N)
        .map(|i| {
            let recipient =
                Recipient::email(EmailAddress::parse(&format!("d{i:03}@example.org")).unwrap());
            Delivery::skipped(&id, &recipient, Channel::Email, &"y".repeat(4096))
        })
        .collect();
    store
        .insert_deliveries(
            &id,
            "",
            &FannedOutPage::default(),
            &[Channel::Email],
            &deliveries,
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for limit in ["1000", "100"] {
        let path = format!("/v1/notifications/{id}/deliveries");
        let (items, pages) = all_pages(
            &mut api,
            "api-get-deliveries.json",
            &path,
            &[("limit", limit)],
        )
        .await;
        assert_eq!(
            items.len(),
            N,
            "limit {limit}: {} of {N} deliveries in {pages} pages",
            items.len()
        );
        seen = items
            .iter()
            .map(|d| d["address"].as_str().unwrap().to_owned())
            .collect();
    }
    assert_eq!(seen.len(), N, "each delivery once");
}
