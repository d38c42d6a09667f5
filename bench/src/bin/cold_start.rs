//! Cold start of the three Lambda functions: each release binary (a native build) is started
//! against a stub of the Lambda Runtime API on loopback, with the environment Lambda gives it and
//! the stack's variables, and AWS behind moto on loopback. Measured per start: exec → the first
//! `GET /runtime/invocation/next` (init), and that first invocation (event handed out → its
//! response posted). In the same run, the same for a hello-world `lambda_runtime` function (the
//! floor), and each function's init as a ratio to it.
//!
//! ./scripts/test --no-run  (sets up .venv), then:
//! cargo run --release -p notify-bench --bin cold_start [-- RUNS]
//! (it builds the functions and the floor with `cargo build --release` first).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use notify_aws::config::AwsConfig;
use notify_tests::aws::AwsWorld;
use notify_tests::repo_root;
use serde_json::Value;

/// One start's stub of the Runtime API: hands out one event, records when.
#[derive(Default)]
struct Stub {
    event: String,
    first_next: Mutex<Option<Instant>>,
    answered: Mutex<Option<(Instant, String)>>,
    done: tokio::sync::Notify,
}

async fn next(State(stub): State<Arc<Stub>>) -> impl IntoResponse {
    let first = {
        let mut first = stub.first_next.lock().unwrap();
        let is_first = first.is_none();
        first.get_or_insert_with(Instant::now);
        is_first
    };
    if !first {
        // The second poll: the measurement is over; the process is killed while it waits.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = jiff::Timestamp::now().as_millisecond() + 30_000;
    headers.insert(
        "lambda-runtime-aws-request-id",
        "00000000-0000-0000-0000-000000000001".parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000001".parse().unwrap(),
    );
    (StatusCode::OK, headers, stub.event.clone())
}

async fn answer(State(stub): State<Arc<Stub>>, kind: &'static str, body: String) -> StatusCode {
    *stub.answered.lock().unwrap() = Some((Instant::now(), format!("{kind}: {body}")));
    stub.done.notify_one();
    StatusCode::ACCEPTED
}

struct Sample {
    init: Duration,
    first_invocation: Duration,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The variables Lambda sets, and those the template sets, pointing at moto.
fn environment(config: &AwsConfig, endpoint: &str, secret_arn: &str) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_SESSION_TOKEN", "testing".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".into()),
        ("RUST_LOG", "warn".into()),
        ("NOTIFY_TABLE", config.table.clone()),
        ("NOTIFY_FANOUT_QUEUE_URL", config.fanout_queue_url.clone()),
        ("NOTIFY_FANOUT_QUEUE_ARN", config.fanout_queue_arn.clone()),
        (
            "NOTIFY_DISPATCH_QUEUE_URL",
            config.dispatch_queue_url.clone(),
        ),
        ("NOTIFY_SCHEDULE_GROUP", config.schedule_group.clone()),
        (
            "NOTIFY_SCHEDULER_ROLE_ARN",
            config.scheduler_role_arn.clone(),
        ),
        ("NOTIFY_EMAIL_FROM", config.email_from.clone()),
        ("NOTIFY_API_KEY_SECRET_ARN", secret_arn.into()),
    ];
    if let Some(dlq) = &config.scheduler_dlq_arn {
        env.push(("NOTIFY_SCHEDULER_DLQ_ARN", dlq.clone()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

async fn start_once(binary: &PathBuf, env: &[(String, String)], event: &str) -> Sample {
    let stub = Arc::new(Stub {
        event: event.to_owned(),
        ..Stub::default()
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|s, b| answer(s, "response", b)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(|s, b| answer(s, "error", b)),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|s, b| answer(s, "init error", b)),
        )
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let waited = tokio::time::timeout(Duration::from_secs(30), stub.done.notified()).await;
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    assert!(
        waited.is_ok(),
        "{}: no answer within 30 s",
        binary.display()
    );
    let first_next = stub
        .first_next
        .lock()
        .unwrap()
        .expect("the function never asked for an event");
    let (answered, what) = stub.answered.lock().unwrap().clone().unwrap();
    assert!(what.starts_with("response"), "{}: {what}", binary.display());
    Sample {
        init: first_next - started,
        first_invocation: answered - first_next,
    }
}

fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    values.sort();
    let i = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS"))
        .unwrap_or(20);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "-p",
            "api",
            "-p",
            "fanout",
            "-p",
            "dispatch",
            "-p",
            "notify-bench",
            "--bin",
            "hello_lambda",
        ])
        .args(["--bin", "api", "--bin", "fanout", "--bin", "dispatch"])
        .current_dir(repo_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build failed");

    let world = AwsWorld::start().await;
    let secret = aws_sdk_secretsmanager::Client::new(&world.sdk)
        .create_secret()
        .name("notify-api-key")
        .secret_string("local-dev-key")
        .send()
        .await
        .expect("create the API key secret in moto");
    let env = environment(&world.config, &world.moto.endpoint, secret.arn().unwrap());
    let event =
        |name: &str| std::fs::read_to_string(repo_root().join("events").join(name)).unwrap();
    let functions = [
        (
            "hello-world (floor)",
            "hello_lambda",
            r#"{"name": "bench"}"#.to_owned(),
        ),
        (
            "api: POST /v1/notifications",
            "api",
            event("api-post-notification-now.json"),
        ),
        (
            "fanout: sqs-fanout.json",
            "fanout",
            event("sqs-fanout.json"),
        ),
        (
            "dispatch: sqs-dispatch.json",
            "dispatch",
            event("sqs-dispatch.json"),
        ),
    ];
    println!(
        "{runs} cold starts each, native release builds ({}), AWS on moto over loopback",
        std::env::consts::ARCH
    );
    println!(
        "{:<30} {:>10} {:>10} {:>12} {:>12} {:>9} {:>8}",
        "function", "init p50", "init p90", "1st inv p50", "1st inv p90", "init/floor", "MB"
    );
    let mut floor = None;
    for (label, bin, event) in functions {
        let binary = target_dir().join("release").join(bin);
        let _: Value = serde_json::from_str(&event).expect("events are JSON");
        let _ = start_once(&binary, &env, &event).await; // warm the page cache: a Lambda's image is local too
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(start_once(&binary, &env, &event).await);
        }
        let init = percentile(samples.iter().map(|s| s.init).collect(), 0.5);
        let ratio = ms(init) / ms(*floor.get_or_insert(init));
        println!(
            "{:<30} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>10.2}ms {:>8.2}x {:>8.1}",
            label,
            ms(init),
            ms(percentile(samples.iter().map(|s| s.init).collect(), 0.9)),
            ms(percentile(
                samples.iter().map(|s| s.first_invocation).collect(),
                0.5
            )),
            ms(percentile(
                samples.iter().map(|s| s.first_invocation).collect(),
                0.9
            )),
            ratio,
            std::fs::metadata(&binary)
                .map(|m| m.len() as f64 / 1e6)
                .unwrap_or(0.0)
        );
    }
}
