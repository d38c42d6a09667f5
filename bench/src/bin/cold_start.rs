//! Cold start of the four Lambda functions: each release binary (a native build) is started
//! against a stub of the Lambda Runtime API on loopback, with the environment Lambda gives it and
//! the stack's variables, and AWS behind moto on loopback. Measured per start: exec → the first
//! `GET /runtime/invocation/next` (init), and that first invocation (event handed out → its
//! response posted). In the same run, the same for a hello-world `lambda_runtime` function (the
//! floor), and each function's init as a ratio to it.
//!
//! ./scripts/test --no-run  (sets up .venv), then:
//! cargo run --release -p notify-bench --bin cold_start [-- RUNS]
//! (it builds the functions and the floor with `cargo build --release` first: the functions as
//! the Lambda build makes them, with the rustflags `.cargo/config.toml` gives the Lambda target
//! (non-PIE), for this machine's target; the floor as a default hello-world build).
//! With `NOTIFY_BENCH_BASELINE=DIR[:DIR...]` (copies of earlier builds of `api`, `fanout`, `dispatch`, `feedback`),
//! each function's earlier builds run in the same session, in the rows below it, named by their
//! directory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use notify_tests::aws::AwsWorld;
use notify_tests::repo_root;
use notify_tests::runtime_api::RuntimeApi;
use serde_json::Value;

struct Sample {
    init: Duration,
    first_invocation: Duration,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

async fn start_once(binary: &PathBuf, env: &[(String, String)], event: &str) -> Sample {
    let runtime = RuntimeApi::start(event).await;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let waited = tokio::time::timeout(Duration::from_secs(30), runtime.answer()).await;
    let _ = child.kill();
    let _ = child.wait();
    let answer = waited.unwrap_or_else(|_| panic!("{}: no answer within 30 s", binary.display()));
    assert_eq!(
        answer.kind,
        "response",
        "{}: {}",
        binary.display(),
        answer.body
    );
    let init_done = runtime.init_done().await;
    Sample {
        init: init_done - started,
        first_invocation: answer.at - init_done,
    }
}

/// This machine's target, named as the Lambda build names its own (`aarch64-unknown-linux-gnu`).
fn native_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// The flags `.cargo/config.toml` gives the Lambda target (none if it has no section), to build
/// the native copies alike. With `--target`, they reach the functions' crates and not the build
/// scripts and proc macros.
fn lambda_rustflags() -> String {
    let path = repo_root().join(".cargo/config.toml");
    let config: toml::Table = std::fs::read_to_string(&path)
        .map(|text| text.parse().expect(".cargo/config.toml is TOML"))
        .unwrap_or_default();
    config
        .get("target")
        .and_then(|t| t.get("aarch64-unknown-linux-gnu"))
        .and_then(|t| t.get("rustflags"))
        .and_then(|f| f.as_array())
        .map(|flags| {
            flags
                .iter()
                .map(|f| f.as_str().expect("rustflags are strings"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn cargo_build(args: &[&str], rustflags: Option<&str>) {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--release"]).args(args);
    if let Some(flags) = rustflags {
        cargo.env("RUSTFLAGS", flags);
    }
    let status = cargo
        .current_dir(repo_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
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
    // The functions on their own, as `cargo lambda build --package` builds them: built beside
    // the bench, they would get the features its dependencies turn on in shared crates.
    cargo_build(
        &[
            "--target",
            &native_target(),
            "-p",
            "api",
            "-p",
            "fanout",
            "-p",
            "dispatch",
            "-p",
            "feedback",
            "-p",
            "webhooks",
        ],
        Some(&lambda_rustflags()),
    );
    cargo_build(&["-p", "notify-bench", "--bin", "hello_lambda"], None);
    let baselines: Vec<PathBuf> = std::env::var_os("NOTIFY_BENCH_BASELINE")
        .map(|dirs| std::env::split_paths(&dirs).collect())
        .unwrap_or_default();

    let world = AwsWorld::start().await;
    let secret_arn = world.first_key_secret("local-dev-key").await;
    // Each function with what Lambda and the template give it; the floor with the api's.
    let env = |bin: &str| {
        let function = if bin == "hello_lambda" { "api" } else { bin };
        let mut env = world.function_environment(function, &secret_arn);
        env.push(("AWS_ENDPOINT_URL".into(), world.moto.endpoint.clone()));
        env
    };
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
        (
            "feedback: sqs-feedback.json",
            "feedback",
            event("sqs-feedback.json"),
        ),
        (
            "webhooks: sqs-webhook.json",
            "webhooks",
            event("sqs-webhook.json"),
        ),
    ];
    println!(
        "{runs} cold starts each, native release builds ({}; the functions with the Lambda target's rustflags: {:?}), AWS on moto over loopback",
        std::env::consts::ARCH,
        lambda_rustflags()
    );
    println!(
        "{:<30} {:>10} {:>10} {:>12} {:>12} {:>9} {:>8}",
        "function", "init p50", "init p90", "1st inv p50", "1st inv p90", "init/floor", "MB"
    );
    let mut entries = Vec::new();
    for (label, bin, event) in functions {
        let _: Value = serde_json::from_str(&event).expect("events are JSON");
        let built = match bin {
            "hello_lambda" => target_dir().join("release"),
            _ => target_dir().join(native_target()).join("release"),
        };
        entries.push((label.to_owned(), built.join(bin), event.clone(), env(bin)));
        for dir in baselines.iter().filter(|_| bin != "hello_lambda") {
            if dir.join(bin).exists() {
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                entries.push((
                    format!("  {bin} ({name})"),
                    dir.join(bin),
                    event.clone(),
                    env(bin),
                ));
            }
        }
    }
    // Round by round, every binary once per round, so that the machine's drift (a noisy
    // neighbour, the CPU's clock) lands on all of them alike.
    for (_, binary, event, env) in &entries {
        let _ = start_once(binary, env, event).await; // warm the page cache: a Lambda's image is local too
    }
    let mut samples: Vec<Vec<Sample>> = entries.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for ((_, binary, event, env), samples) in entries.iter().zip(&mut samples) {
            samples.push(start_once(binary, env, event).await);
        }
    }
    let mut floor = None;
    for ((label, binary, _, _), samples) in entries.iter().zip(samples) {
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
            std::fs::metadata(binary)
                .map(|m| m.len() as f64 / 1e6)
                .unwrap_or(0.0)
        );
    }
}
