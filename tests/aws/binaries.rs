//! The three function binaries, run as Lambda runs them: a process with only the variables
//! Lambda sets (credentials, region; no HOME, no profile file) and the template's, asking a
//! stub of the Runtime API for its event, with AWS on moto behind the fault proxy (no faults:
//! it counts the calls). One notification goes api → fanout → dispatch through them, each
//! function's event made from what the previous one put on its queue, and arrives in moto's
//! mailbox. Each function's init makes no AWS call.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use notify_tests::aws::{AwsWorld, WorldOptions, api_event};
use notify_tests::runtime_api::{Answer, RuntimeApi};
use serde_json::{Value, json};

/// `NOTIFY_FUNCTIONS_DIR` (`scripts/test` builds the functions there), else the test binary's
/// profile directory: target/<profile>/deps/<test binary> → target/<profile>/<function>.
fn function_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("NOTIFY_FUNCTIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().to_path_buf()
        });
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is not built: cargo build -p {name} (scripts/test does)",
        binary.display()
    );
    binary
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `function` on `event`: checks that its init made no AWS call, and returns its answer.
async fn invoke(world: &AwsWorld, secret_arn: &str, function: &str, event: &Value) -> Answer {
    let proxy = world.proxy.as_ref().unwrap();
    let runtime = RuntimeApi::start_gated(&event.to_string()).await;
    let before = proxy.report().await["calls"].clone();
    let _child = Killed(
        Command::new(function_binary(function))
            .env_clear()
            .envs(world.function_environment(function, secret_arn))
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("AWS_LAMBDA_RUNTIME_API", runtime.address.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {function}: {e}")),
    );
    tokio::time::timeout(Duration::from_secs(30), runtime.init_done())
        .await
        .unwrap_or_else(|_| panic!("{function} did not finish its init within 30 s"));
    assert_eq!(
        proxy.report().await["calls"],
        before,
        "{function}'s init called AWS"
    );
    runtime.release();
    let answer = tokio::time::timeout(Duration::from_secs(30), runtime.answer())
        .await
        .unwrap_or_else(|_| panic!("{function} did not answer within 30 s"));
    assert_eq!(answer.kind, "response", "{function}: {}", answer.body);
    answer
}

/// Runs a queue consumer on the next message of `queue_url`, and settles the batch as the event
/// source mapping does.
async fn consume(world: &AwsWorld, secret_arn: &str, function: &str, queue_url: &str) {
    let event: SqsEvent = world.receive_event(queue_url, 10).await;
    assert_eq!(event.records.len(), 1, "one message for {function}");
    let answer = invoke(
        world,
        secret_arn,
        function,
        &serde_json::to_value(&event).unwrap(),
    )
    .await;
    let response: SqsBatchResponse = serde_json::from_str(&answer.body).unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "{function}: {}",
        answer.body
    );
    world.settle(queue_url, &event, &response).await;
}

#[tokio::test]
async fn a_notification_goes_through_the_three_binaries_and_no_init_calls_aws() {
    let world = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        ..WorldOptions::default()
    })
    .await;
    let secret_arn = &world.first_key_secret("local-dev-key").await;

    let post = api_event(
        "api-post-notification-now.json",
        None,
        Some(json!({
            "to": {"email": "ada@example.com"},
            "content": {"subject": "Hello", "text": "From the binaries"},
        })),
    );
    let answer = invoke(&world, secret_arn, "api", &post).await;
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(response["statusCode"], 202, "{response}");

    consume(&world, secret_arn, "fanout", &world.config.fanout_queue_url).await;
    consume(
        &world,
        secret_arn,
        "dispatch",
        &world.config.dispatch_queue_url,
    )
    .await;

    let mails = world.moto.raw_emails().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].to_string().contains("ada@example.com"),
        "{}",
        mails[0]
    );
}
