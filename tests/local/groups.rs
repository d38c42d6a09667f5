//! notifyd end to end with groups: the API, and a 10,000-member group sent now and at send_at.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use notify_tests::{Notifyd, SmtpSink, in_secs};
use serde_json::json;

#[tokio::test]
async fn group_api_subscribes_pages_and_counts() {
    let d = Notifyd::start(&[]).await;
    assert_eq!(d.get("/v1/groups/g1").await.status, 404);
    let g = d
        .put("/v1/groups/g1", json!({"name": "Release notes"}))
        .await;
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(
        g.body,
        json!({"group_id": "g1", "name": "Release notes", "member_count": 0})
    );
    for i in 0..5 {
        d.put(
            &format!("/v1/users/u{i}"),
            json!({"email": format!("u{i}@example.com")}),
        )
        .await;
    }
    assert_eq!(
        d.send(d.request(reqwest::Method::PUT, "/v1/groups/g1/members/u0"))
            .await
            .status,
        204
    );
    assert_eq!(
        d.send(d.request(reqwest::Method::PUT, "/v1/groups/g1/members/u0"))
            .await
            .status,
        204,
        "idempotent"
    );
    assert_eq!(
        d.send(d.request(reqwest::Method::PUT, "/v1/groups/g1/members/ghost"))
            .await
            .status,
        404
    );
    assert_eq!(
        d.send(d.request(reqwest::Method::PUT, "/v1/groups/nope/members/u0"))
            .await
            .status,
        404
    );
    let batch = d
        .post(
            "/v1/groups/g1/members",
            json!({"add": ["u1", "u2", "u3", "u4"], "remove": ["u0"]}),
        )
        .await;
    assert_eq!(batch.status, 200, "{}", batch.text);
    assert_eq!(
        batch.body,
        json!({"added": 4, "removed": 1, "member_count": 4})
    );
    let bad = d
        .post(
            "/v1/groups/g1/members",
            json!({"add": ["u1", "ghost", "bad id"], "extra": 1}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.fields(), ["extra", "add[2]"]);
    let unknown = d
        .post("/v1/groups/g1/members", json!({"add": ["u1", "ghost"]}))
        .await;
    assert_eq!(
        (unknown.status, unknown.fields()),
        (422, vec!["add[1]".to_owned()])
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let big = d
        .post("/v1/groups/g1/members", json!({"remove": too_many}))
        .await;
    assert_eq!((big.status, big.fields()), (422, vec!["body".to_owned()]));

    let p1 = d.get("/v1/groups/g1/members?limit=3").await;
    assert_eq!(p1.body["items"], json!(["u1", "u2", "u3"]));
    let c = p1.body["next_cursor"].as_str().unwrap();
    let p2 = d
        .get(&format!("/v1/groups/g1/members?limit=3&cursor={c}"))
        .await;
    assert_eq!(
        (p2.body["items"].clone(), p2.body["next_cursor"].clone()),
        (json!(["u4"]), json!(null))
    );

    assert_eq!(
        d.send(d.request(reqwest::Method::DELETE, "/v1/groups/g1/members/u1"))
            .await
            .status,
        204
    );
    assert_eq!(
        d.send(d.request(reqwest::Method::DELETE, "/v1/groups/g1/members/u1"))
            .await
            .status,
        204,
        "idempotent"
    );
    assert_eq!(d.delete("/v1/users/u2").await.status, 204);
    assert_eq!(
        d.get("/v1/groups/g1").await.body["member_count"],
        2,
        "deleting a user unsubscribes them"
    );
    assert_eq!(
        d.get("/v1/groups/g1/members").await.body["items"],
        json!(["u3", "u4"])
    );
    let renamed = d.put("/v1/groups/g1", json!({"name": "Renamed"})).await;
    assert_eq!(renamed.body["member_count"], 2);
    assert_eq!(d.put("/v1/groups/g1", json!({})).await.fields(), ["name"]);

    let unknown_group = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "nope"}, "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    assert_eq!(
        (unknown_group.status, unknown_group.fields()),
        (422, vec!["to.group_id".to_owned()])
    );
    assert_eq!(d.delete("/v1/groups/g1").await.status, 204);
    assert_eq!(d.get("/v1/groups/g1").await.status, 404);
    assert_eq!(d.delete("/v1/groups/g1").await.status, 404);
}

const MEMBERS: usize = 10_000;
const UNSUBSCRIBED: usize = 7;
const NO_EMAIL: usize = 42;

fn uid(i: usize) -> String {
    format!("u{i:05}")
}

#[tokio::test]
async fn a_10000_member_group_gets_one_email_each_now_and_at_send_at() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let started = std::time::Instant::now();
    let users = (0..MEMBERS)
        .map(|i| {
            let user = if i == NO_EMAIL {
                json!({"phone": "+14155550100"})
            } else {
                json!({"email": format!("{}@example.com", uid(i))})
            };
            (uid(i), user)
        })
        .collect();
    d.put_group_of("everyone", users).await;
    assert_eq!(
        d.get("/v1/groups/everyone").await.body["member_count"],
        MEMBERS
    );
    eprintln!("set-up of {MEMBERS} users: {:?}", started.elapsed());

    let send_at = in_secs(4.0);
    let later = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "everyone"}, "content": {"subject": "Later", "text": "At send_at"}, "send_at": send_at}),
        )
        .await;
    assert_eq!(later.status, 202, "{}", later.text);
    // Members are resolved when the send fires: this one is off the list for both sends.
    assert_eq!(
        d.send(d.request(
            reqwest::Method::DELETE,
            &format!("/v1/groups/everyone/members/{}", uid(UNSUBSCRIBED))
        ))
        .await
        .status,
        204
    );
    let now =
        d.post("/v1/notifications", json!({"to": {"group_id": "everyone"}, "content": {"subject": "Now", "text": "Right away"}})).await;
    assert_eq!(now.status, 202);

    let expected_each = MEMBERS - 2;
    for (a, subject) in [(&now, "Now"), (&later, "Later")] {
        let id = a.body["id"].as_str().unwrap();
        let n = d
            .wait_status(
                id,
                &["completed", "partially_failed", "failed"],
                Duration::from_secs(300),
            )
            .await;
        assert_eq!(n.body["status"], "completed", "{subject}: {}", n.text);
        assert_eq!(
            n.body["counts"],
            json!({"recipients": MEMBERS - 1, "pending": 0, "sent": expected_each, "failed": 0, "skipped": 1, "delivered": 0, "bounced": 0, "complained": 0}),
            "{subject}"
        );
    }
    let mails = smtp
        .wait_for(2 * expected_each, Duration::from_secs(60))
        .await;
    let mut per_address: HashMap<(String, String), usize> = HashMap::new();
    let send_at: Timestamp = send_at.parse().unwrap();
    for m in &mails {
        let subject = m.header("Subject").unwrap();
        if subject == "Later" {
            assert!(
                m.received_at >= send_at,
                "a scheduled email arrived before send_at"
            );
        }
        *per_address
            .entry((m.rcpt_tos[0].clone(), subject))
            .or_default() += 1;
    }
    assert_eq!(mails.len(), 2 * expected_each, "no duplicates");
    for i in 0..MEMBERS {
        for subject in ["Now", "Later"] {
            let got = per_address
                .get(&(format!("{}@example.com", uid(i)), subject.to_owned()))
                .copied()
                .unwrap_or(0);
            let want = usize::from(i != UNSUBSCRIBED && i != NO_EMAIL);
            assert_eq!(got, want, "{} {subject}", uid(i));
        }
    }
    let skipped_reason = |id: &str| {
        let d = &d;
        let id = id.to_owned();
        async move {
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/v1/notifications/{id}/deliveries?limit=1000&cursor={c}"),
                    None => format!("/v1/notifications/{id}/deliveries?limit=1000"),
                };
                let page = d.get(&path).await;
                if let Some(row) = page.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["status"] == "skipped")
                {
                    return (
                        row["user_id"].as_str().unwrap().to_owned(),
                        row["error"].as_str().unwrap().to_owned(),
                    );
                }
                cursor = Some(
                    page.body["next_cursor"]
                        .as_str()
                        .expect("a skipped row")
                        .to_owned(),
                );
            }
        }
    };
    let (who, why) = skipped_reason(now.body["id"].as_str().unwrap()).await;
    assert_eq!(
        (who.as_str(), why.as_str()),
        (uid(NO_EMAIL).as_str(), "the recipient has no email address")
    );
    eprintln!("whole test: {:?}", started.elapsed());
}
