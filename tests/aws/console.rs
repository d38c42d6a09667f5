//! The console on AWS, through the api handler: the same page and policy as notifyd's, a
//! delivery's message rendered by the api function exactly as dispatch sent it through SES
//! (moto keeps the raw MIME), and no outbox.

use notify_tests::aws::{ApiHandler, AwsWorld, api_event};
use serde_json::json;

use crate::suppressions::call;

#[tokio::test]
async fn the_api_function_serves_the_console_and_renders_what_ses_was_given() {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    let mut page = api_event("api-get-console.json", None, None);
    let served = api.call(page.clone()).await;
    assert_eq!(served.status, 200);
    assert!(
        served
            .body
            .as_str()
            .unwrap()
            .contains("/console/console.js")
    );
    let csp = served.headers["content-security-policy"].as_str().unwrap();
    assert!(
        csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    page["rawPath"] = json!("/console/console.js");
    page["requestContext"]["http"]["path"] = json!("/console/console.js");
    let script = api.call(page).await;
    assert_eq!(script.status, 200);
    assert!(
        script.headers["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    let (status, body) = call(
        &mut api,
        "PUT",
        "/v1/users/ada",
        Some(json!({"email": "ada@example.org"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // An optional category: the email carries a one-click unsubscribe link, made by the
    // deployment's key (in Secrets Manager) on both sides.
    let (status, accepted) = call(
        &mut api,
        "POST",
        "/v1/notifications",
        Some(json!({"to": {"user_id": "ada"}, "channels": ["email", "in_app"], "category": "news",
                    "content": {"subject": "Issue 7", "text": "Read it.", "html": "<p>Read <i>it</i>.</p>",
                                "in_app": {"body": "Issue 7 is out"}}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let dispatch = notify_aws::wiring::dispatch(&w.config, &w.sdk).unwrap();
    let (n, _) = crate::faults::run_until_final(&w, &mut api, &dispatch, id).await;
    assert_eq!(n["status"], "completed", "{n}");

    let (status, message) = call(
        &mut api,
        "GET",
        &format!("/v1/notifications/{id}/deliveries/ada/email/message"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{message}");
    let sent = w.moto.raw_emails().await;
    assert_eq!(sent.len(), 1);
    let raw = sent[0]["raw_data"].as_str().unwrap();
    let ses_view = notify_core::domain::email_view::EmailView::parse(raw.as_bytes()).unwrap();
    let email = &message["email"];
    assert_eq!(email["subject"], "Issue 7");
    assert_eq!(email["subject"], json!(ses_view.subject));
    assert_eq!(email["html"], json!(ses_view.html));
    assert_eq!(email["text"], json!(ses_view.text));
    let header = |name: &str| {
        email["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        header("List-Unsubscribe"),
        ses_view
            .headers
            .iter()
            .find(|h| h.name == "List-Unsubscribe")
            .map(|h| h.value.clone()),
        "the same link SES was given"
    );
    assert_eq!(header("Message-ID"), ses_view.message_id);

    let (status, in_app) = call(
        &mut api,
        "GET",
        &format!("/v1/notifications/{id}/deliveries/ada/in_app/message"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{in_app}");
    assert_eq!(in_app["in_app"]["body"], "Issue 7 is out");

    let mut filtered = api_event(
        "api-get-deliveries.json",
        Some(&format!("/v1/notifications/{id}/deliveries")),
        None,
    );
    filtered["rawQueryString"] = json!("channel=in_app");
    filtered["queryStringParameters"] = json!({"channel": "in_app"});
    let a = api.call(filtered).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", a.body);
    assert_eq!(items[0]["channel"], "in_app");
    assert_eq!(items[0]["recipient"], "ada");

    let (status, outbox) = call(&mut api, "GET", "/v1/outbox/emails", None).await;
    assert_eq!(status, 404, "SES and SNS keep the records on AWS: {outbox}");
}
