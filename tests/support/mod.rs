//! What the end-to-end tests run against: the real `notifyd` binary, a real SMTP server
//! (aiosmtpd on loopback) and a real HTTP webhook receiver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

pub mod aws;
pub mod faults;
pub mod lambdas;
pub mod runtime_api;
pub mod sim;
pub mod sse;
pub mod test_log;

pub fn free_port() -> u16 {
    notify_aws_local::emulator::free_port().expect("a free loopback port")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn python() -> PathBuf {
    std::env::var_os("NOTIFY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

pub fn notifyd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NOTIFYD_BIN") {
        return p.into();
    }
    // target/<profile>/deps/<test binary> → target/<profile>/notifyd
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("notifyd")
}

pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut ready: F) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ready()
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Email {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    pub received_at: Timestamp,
}

impl Email {
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        head.split("\r\n")
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    }
}

#[derive(Default, Clone)]
pub struct SinkFaults {
    /// Share of messages answered with 451 (transient).
    pub fail_4xx_rate: f64,
    /// Share of messages answered with 421 (throttling).
    pub throttle_rate: f64,
    /// Recipients answered with 550 (permanent).
    pub reject: Vec<String>,
}

/// Starts a helper (a Python script of `tests/support`) and waits until it listens on `port`.
async fn spawn_listening(mut cmd: Command, port: u16, what: &str) -> Child {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {what} with {} (run ./scripts/test to set up .venv): {e}",
                python().display()
            )
        });
    let up = wait_until(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "{what} did not start on port {port}");
    child
}

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    out: PathBuf,
    /// How far `count` has read the file, and the complete lines before that point.
    counted: Mutex<(u64, usize)>,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_with(SinkFaults::default()).await
    }

    pub async fn start_with(faults: SinkFaults) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        std::fs::write(&out, "").unwrap();
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/support/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(["--fail-4xx-rate", &faults.fail_4xx_rate.to_string()])
            .args(["--throttle-rate", &faults.throttle_rate.to_string()]);
        let reject_file = dir.path().join("reject.txt");
        std::fs::write(&reject_file, faults.reject.join("\n")).unwrap();
        cmd.arg("--reject-file").arg(&reject_file);
        let child = spawn_listening(cmd, port, "the SMTP sink").await;
        Self {
            child,
            port,
            out,
            counted: Mutex::new((0, 0)),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The rejected recipients accept mail from now on (they fixed their mailboxes).
    pub fn accept_all(&self) {
        std::fs::write(self._dir.path().join("reject.txt"), "").unwrap();
    }

    pub fn messages(&self) -> Vec<Email> {
        let text = std::fs::read_to_string(&self.out).unwrap();
        // The sink may be writing a line right now: read only the complete ones.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(parse_email)
            .collect()
    }

    /// The first message that arrived, read without the others (a benchmark's file holds
    /// hundreds of thousands).
    pub fn first_message(&self) -> Option<Email> {
        use std::io::BufRead;
        let file = std::fs::File::open(&self.out).ok()?;
        let mut line = String::new();
        std::io::BufReader::new(file).read_line(&mut line).ok()?;
        line.ends_with('\n').then(|| parse_email(&line))
    }

    /// How many messages each recipient got.
    pub fn per_recipient(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for m in self.messages() {
            *counts.entry(m.rcpt_tos[0].clone()).or_default() += 1;
        }
        counts
    }

    /// How many messages arrived, without parsing them, reading only what arrived since the
    /// last call: benchmarks poll this on the machine they measure, so it must cost next to
    /// nothing (reading a 100k-message file whole every 20 ms took most of a core).
    pub fn count(&self) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let mut counted = self.counted.lock().unwrap();
        let (offset, lines) = *counted;
        let mut new = Vec::new();
        let read = std::fs::File::open(&self.out).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut new)
        });
        if read.is_err() {
            return lines;
        }
        // Only complete lines: the sink may be writing one right now.
        let complete = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let added = new[..complete].iter().filter(|b| **b == b'\n').count();
        *counted = (offset + complete as u64, lines + added);
        lines + added
    }

    /// Waits until at least `n` messages arrived; returns all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Email> {
        wait_until(timeout, || self.messages().len() >= n).await;
        self.messages()
    }
}

/// One line of the sink's file.
fn parse_email(line: &str) -> Email {
    let v: Value = serde_json::from_str(line).unwrap();
    Email {
        mail_from: v["mail_from"].as_str().unwrap().to_owned(),
        rcpt_tos: v["rcpt_tos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect(),
        data: v["data"].as_str().unwrap().to_owned(),
        received_at: Timestamp::from_millisecond(v["received_at_ms"].as_i64().unwrap()).unwrap(),
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook endpoint that verifies every request with the Standard Webhooks reference
/// library (`tests/support/webhook_receiver.py`), not with our code.
pub struct WebhookReceiver {
    child: Child,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        std::fs::write(&out, "").unwrap();
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/support/webhook_receiver.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out);
        let child = spawn_listening(cmd, port, "the webhook receiver").await;
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The secret to verify with, and how many requests to answer 503 first.
    pub async fn configure(&self, secret: &str, fail_first: u32) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_config", self.port))
            .body(json!({"secret": secret, "fail_first": fail_first}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Every request so far: `{"verified", "webhook_id", "status", "payload" | "error"}`.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `done` holds of what was received.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Web Push service that also plays the browsers (`tests/support/push_service.py`): it
/// decrypts each push with PyPI's `http_ece` and the browser's own key, and checks the VAPID
/// token with `cryptography`, not with our code.
pub struct PushService {
    child: Child,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl PushService {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pushes.jsonl");
        std::fs::write(&out, "").unwrap();
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/support/push_service.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out);
        let child = spawn_listening(cmd, port, "the push service").await;
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// A new browser's subscription: `{"endpoint", "keys": {"p256dh", "auth"}}`.
    pub async fn subscribe(&self, browser: &str) -> Value {
        reqwest::get(format!(
            "http://127.0.0.1:{}/subscribe/{browser}",
            self.port
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }

    /// Browsers that unsubscribed (answered 410), and the VAPID key the server announced.
    pub async fn configure(&self, gone: &[&str], vapid_public_key: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_config", self.port))
            .body(json!({"gone": gone, "vapid_public_key": vapid_public_key}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Browsers whose pushes the service answers only after `secs`.
    pub async fn slow(&self, names: &[&str], secs: u64, vapid_public_key: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_config", self.port))
            .body(
                json!({"slow": names, "slow_secs": secs, "vapid_public_key": vapid_public_key})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Every push so far: `{"name", "ok", "status", "payload" | "error", "claims", "headers"}`.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A stand-in for Google's token endpoint and FCM's send endpoint
/// (`tests/support/fcm_standin.py`), checking the service account's JWT and each message.
pub struct FcmStandin {
    child: Child,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl FcmStandin {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fcm.jsonl");
        std::fs::write(&out, "").unwrap();
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/support/fcm_standin.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out);
        let child = spawn_listening(cmd, port, "the FCM stand-in").await;
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new service account's JSON key file, written to `path`.
    pub async fn service_account(&self, path: &std::path::Path) {
        let json = reqwest::get(format!("{}/service-account", self.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        std::fs::write(path, json).unwrap();
    }

    pub async fn unregister(&self, tokens: &[&str]) {
        let r = reqwest::Client::new()
            .post(format!("{}/_config", self.url()))
            .body(json!({"unregistered": tokens}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Every request: `{"path", "ok", "status", "message" | "error"}`.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for FcmStandin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server that records every POST body and answers with the status it is told.
pub struct Webhook {
    pub url: String,
    pub received: Arc<Mutex<Vec<(Value, Timestamp)>>>,
    pub answer: Arc<Mutex<u16>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<(Value, Timestamp)>>> = Arc::default();
        let answer = Arc::new(Mutex::new(200u16));
        let (r, a) = (received.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/sms",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (r, a) = (r.clone(), a.clone());
                async move {
                    let status = *a.lock().unwrap();
                    if status < 300 {
                        r.lock().unwrap().push((body, Timestamp::now()));
                    }
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(json!({"ok": status < 300})),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            received,
            answer,
            task,
        }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_until(timeout, || self.received.lock().unwrap().len() >= n).await;
        self.bodies()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP answer, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `field`s named in a problem+json answer.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `notifyd` in a temporary data directory: in this process by default (its library on a
/// runtime of its own), or as the real binary (`start_process`) for the tests that kill it,
/// signal it or restart it on the same data.
pub struct Notifyd {
    running: Option<Running>,
    pub data_dir: tempfile::TempDir,
    pub port: u16,
    pub key: String,
    env: Vec<(String, String)>,
    client: reqwest::Client,
}

enum Running {
    Process(Child),
    InProcess {
        stop: tokio_util::sync::CancellationToken,
        thread: std::thread::JoinHandle<()>,
    },
}

impl Notifyd {
    /// In process: `notifyd::build` and `run` on a runtime of their own, configured by the
    /// flags that stand for the `NOTIFY_*` variables in `env`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let mut d = Self::new(env);
        d.run_in_process().await;
        d
    }

    /// The real binary (`NOTIFYD_BIN`), its output in `notifyd.log` of the data directory.
    pub async fn start_process(env: &[(&str, &str)]) -> Self {
        let mut d = Self::new(env);
        d.spawn().await;
        d
    }

    fn new(env: &[(&str, &str)]) -> Self {
        Self {
            running: None,
            data_dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            key: "test-key-0123456789".to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn run_in_process(&mut self) {
        use clap::Parser;
        let mut args = vec![
            "notifyd".to_owned(),
            format!("--addr=127.0.0.1:{}", self.port),
            format!("--data-dir={}", self.data_dir.path().display()),
            format!("--api-key={}", self.key),
        ];
        for (name, value) in self.env.iter().filter(|(name, _)| name != "RUST_LOG") {
            let flag = name
                .strip_prefix("NOTIFY_")
                .unwrap_or_else(|| panic!("{name} is not a notifyd setting"))
                .to_ascii_lowercase()
                .replace('_', "-");
            args.push(format!("--{flag}={value}"));
        }
        let config = notifyd::Config::try_parse_from(args).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let (ready, started) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                match notifyd::build(&config).await {
                    Ok(service) => {
                        let _ = ready.send(Ok(()));
                        service.run(token).await.unwrap();
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{e:#}")));
                    }
                }
            });
        });
        started
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("notifyd did not start: {e}"));
        self.running = Some(Running::InProcess { stop, thread });
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("notifyd.log"))
            .unwrap();
        let mut cmd = Command::new(notifyd_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NOTIFY_ADDR", format!("127.0.0.1:{}", self.port))
            .env("NOTIFY_DATA_DIR", self.data_dir.path())
            .env("NOTIFY_API_KEY", &self.key)
            .env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (build it with cargo build -p notifyd)",
                    notifyd_bin().display()
                )
            });
        self.running = Some(Running::Process(child));
        let port = self.port;
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "notifyd did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("notifyd.log")).unwrap_or_default()
    }

    fn child(&mut self) -> Child {
        match self.running.take() {
            Some(Running::Process(child)) => child,
            _ => panic!("only a notifyd started with start_process can be killed or signalled"),
        }
    }

    /// The process's id, when it runs as a process.
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Some(Running::Process(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    /// Starts the binary again on the same data.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "stop it first");
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn api_key(&self) -> &str {
        &self.key
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.key)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::PATCH, path).json(&body))
            .await
    }

    /// Polls the notification until its status is one of `statuses`.
    /// Creates the users (16 requests at a time) and a group `group` of all of them.
    pub async fn put_group_of(&self, group: &str, users: Vec<(String, Value)>) {
        use futures::StreamExt;
        let ids: Vec<String> = users.iter().map(|(id, _)| id.clone()).collect();
        futures::stream::iter(users)
            .map(|(id, body)| async move {
                let a = self.put(&format!("/v1/users/{id}"), body).await;
                assert_eq!(a.status, 200, "{}", a.text);
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        assert_eq!(
            self.put(&format!("/v1/groups/{group}"), json!({"name": group}))
                .await
                .status,
            200
        );
        for chunk in ids.chunks(1000) {
            let a = self
                .post(
                    &format!("/v1/groups/{group}/members"),
                    json!({"add": chunk}),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
        }
    }

    pub async fn wait_status(&self, id: &str, statuses: &[&str], timeout: Duration) -> Answer {
        let start = Instant::now();
        loop {
            let a = self.get(&format!("/v1/notifications/{id}")).await;
            if statuses.contains(&a.body["status"].as_str().unwrap_or(""))
                || start.elapsed() > timeout
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Notifyd {
    fn drop(&mut self) {
        match self.running.take() {
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::InProcess { stop, thread }) => {
                stop.cancel();
                let _ = thread.join();
            }
            None => {}
        }
    }
}

/// An RFC 3339 time `secs` seconds from now (millisecond precision).
pub fn in_secs(secs: f64) -> String {
    let t = Timestamp::now() + jiff::SignedDuration::from_secs_f64(secs);
    t.round(jiff::Unit::Millisecond).unwrap().to_string()
}
