//! `aws-local up`, the real binary, as a user runs it: the stack made from `template.yaml` in
//! moto, the three functions under their Runtime APIs, the API on a local port. A send now, a
//! reserved send (through a schedule that the local Scheduler fires) and a group send go in
//! through HTTP; `aws-local sent` reads the emails back; SIGTERM stops every process it started.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use notify_tests::{python, repo_root};
use serde_json::{Value, json};

pub(crate) fn binary_dir() -> PathBuf {
    std::env::var_os("NOTIFY_FUNCTIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().to_path_buf()
        })
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its closing paren.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

pub(crate) struct Up {
    child: Child,
    pub(crate) api: String,
    pub(crate) key: String,
    pub(crate) state_dir: tempfile::TempDir,
}

/// SIGTERM first, so that aws-local stops moto and the functions' processes it started (a
/// SIGKILL would leave them running, holding the test's output and the machine's cores).
impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up() -> Up {
    up_with(&[])
}

/// `aws-local up` with more arguments.
pub(crate) fn up_with(more: &[&str]) -> Up {
    let state_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary_dir().join("aws-local"))
        .arg("up")
        .args(more)
        .args(["--addr", "127.0.0.1:0"])
        .arg("--python")
        .arg(python())
        .arg("--functions-dir")
        .arg(binary_dir())
        .arg("--template")
        .arg(repo_root().join("template.yaml"))
        .arg("--state-dir")
        .arg(state_dir.path())
        // Every reserved send through a schedule, not only those due in over 15 minutes.
        .args(["--env", "NOTIFY_QUEUE_DELAY_MAX_SECS=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run aws-local (scripts/test builds it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut key) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("API=") {
            api = v.to_owned();
        } else if let Some(v) = line.strip_prefix("KEY=") {
            key = v.to_owned();
        } else if line == "aws-local: ready" {
            break;
        }
    }
    assert!(
        !api.is_empty() && !key.is_empty(),
        "aws-local did not get ready"
    );
    // Keep reading stdout so that the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up {
        child,
        api,
        key,
        state_dir,
    }
}

/// What the emulator's SES and SNS took, as `aws-local sent --json` prints it.
pub(crate) fn sent(up: &Up) -> Value {
    let out = Command::new(binary_dir().join("aws-local"))
        .args(["sent", "--json", "--state-dir"])
        .arg(up.state_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) async fn call(
    up: &Up,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", up.api))
        .bearer_auth(&up.key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn completed(up: &Up, id: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, n) = call(
            up,
            reqwest::Method::GET,
            &format!("/v1/notifications/{id}"),
            None,
        )
        .await;
        if n["status"] == "completed" {
            return n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{id} did not complete: {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_stack_runs_locally_from_the_template_and_stops_with_sigterm() {
    let up = up();
    use reqwest::Method as M;
    // What API Gateway would answer: the function's own answer, through the gateway.
    let (status, body) = call(&up, M::GET, "/v1/notifications/ntf_nope", None).await;
    assert_eq!(status, 422, "{body}");
    for (user, email) in [
        ("ada", "ada@example.com"),
        ("bob", "bob@example.com"),
        ("cy", "cy@example.com"),
    ] {
        let (status, body) = call(
            &up,
            M::PUT,
            &format!("/v1/users/{user}"),
            Some(json!({"email": email})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, now) = call(
        &up,
        M::POST,
        "/v1/notifications",
        Some(json!({
            "to": {"user_id": "ada"},
            "content": {"subject": "Now", "text": "Sent now"},
        })),
    )
    .await;
    assert_eq!(status, 202, "{now}");

    let send_at = Timestamp::now() + SignedDuration::from_secs(3);
    let (status, reserved) = call(
        &up,
        M::POST,
        "/v1/notifications",
        Some(json!({
            "to": {"user_id": "ada"},
            "send_at": send_at.to_string(),
            "content": {"subject": "Reserved", "text": "Sent at its time"},
        })),
    )
    .await;
    assert_eq!(status, 202, "{reserved}");
    assert_eq!(reserved["status"], "scheduled");

    let (status, _) = call(
        &up,
        M::PUT,
        "/v1/groups/team",
        Some(json!({"name": "Team"})),
    )
    .await;
    assert_eq!(status, 200);
    for user in ["bob", "cy"] {
        let (status, body) = call(
            &up,
            M::PUT,
            &format!("/v1/groups/team/members/{user}"),
            None,
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, group) = call(
        &up,
        M::POST,
        "/v1/notifications",
        Some(json!({
            "to": {"group_id": "team"},
            "content": {"subject": "Group", "text": "To the team"},
        })),
    )
    .await;
    assert_eq!(status, 202, "{group}");

    for n in [&now, &reserved, &group] {
        let done = completed(&up, n["id"].as_str().unwrap()).await;
        assert_eq!(done["counts"]["failed"], 0, "{done}");
    }
    let deliveries = call(
        &up,
        M::GET,
        &format!(
            "/v1/notifications/{}/deliveries",
            reserved["id"].as_str().unwrap()
        ),
        None,
    )
    .await
    .1;
    let sent_at: Timestamp = deliveries["items"][0]["sent_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sent_at >= send_at,
        "a reserved send went out at {sent_at}, before {send_at}"
    );

    let sent = sent(&up);
    let emails = sent["emails"].as_array().unwrap();
    let subjects_to = |to: &str| -> Vec<String> {
        let mut s: Vec<String> = emails
            .iter()
            .filter(|m| {
                m["raw_data"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("To: {to}"))
            })
            .map(|m| {
                let raw = m["raw_data"].as_str().unwrap();
                raw.lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        s.sort();
        s
    };
    assert_eq!(subjects_to("ada@example.com"), ["Now", "Reserved"]);
    assert_eq!(subjects_to("bob@example.com"), ["Group"]);
    assert_eq!(subjects_to("cy@example.com"), ["Group"]);
    assert_eq!(emails.len(), 4, "{sent}");

    // SES reports a permanent bounce for bob, as the stack's configuration set publishes it:
    // to the feedback topic, which moto's SNS delivers raw to the feedback queue, which the
    // feedback function reads. The next send to the group skips bob.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(up.state_dir.path().join("state.json")).unwrap(),
    )
    .unwrap();
    let sns = aws_sdk_sns::Client::new(&notify_aws_local::emulator::sdk_config(
        state["moto"].as_str().unwrap(),
    ));
    let topics = sns.list_topics().send().await.unwrap();
    let topic = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|arn| arn.contains("FeedbackTopic"))
        .expect("the stack's feedback topic");
    let bounce = json!({
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": "bob@example.com", "status": "5.1.1"}],
                   "timestamp": Timestamp::now().to_string()},
        "mail": {"messageId": "0100-local", "destination": ["bob@example.com"]},
    });
    sns.publish()
        .topic_arn(topic)
        .message(bounce.to_string())
        .send()
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let (status, s) = call(&up, M::GET, "/v1/suppressions/bob@example.com", None).await;
        if status == 200 {
            assert_eq!(s["reason"], "bounce");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the bounce did not reach the suppression list: {status} {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, again) = call(
        &up,
        M::POST,
        "/v1/notifications",
        Some(json!({"to": {"group_id": "team"}, "content": {"subject": "Again", "text": "Hi"}})),
    )
    .await;
    let done = completed(&up, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (&done["counts"]["sent"], &done["counts"]["skipped"]),
        (&json!(1), &json!(1)),
        "{done}"
    );

    // moto, and the functions' execution environments.
    stop_and_check(up, "-TERM", 4).await;
}

#[tokio::test]
async fn ctrl_c_stops_it_too() {
    let up = up();
    // moto, and the api's first execution environment after one request.
    let (status, _) = call(&up, reqwest::Method::GET, "/v1/suppressions", None).await;
    assert_eq!(status, 200);
    stop_and_check(up, "-INT", 2).await;
}

/// Sends `signal` to aws-local, which has at least `at_least` children: it exits cleanly and
/// leaves none of them running.
async fn stop_and_check(mut up: Up, signal: &str, at_least: usize) {
    let pid = up.child.id();
    let started = children(pid);
    assert!(
        started.len() >= at_least,
        "children of aws-local: {started:?}"
    );
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "aws-local did not stop on {signal}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "aws-local exited with {status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<u32> = started.into_iter().filter(|p| running(*p)).collect();
    assert!(
        left.is_empty(),
        "still running after aws-local stopped: {left:?}"
    );
}
