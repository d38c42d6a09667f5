//! A stub of the Lambda Runtime API on loopback, for running a function's real binary as Lambda
//! runs it: the process asks for an event (`GET .../invocation/next`), the stub hands out one,
//! and records the answer. The first ask marks the end of init.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What the function posted: to `response`, `error` or `init error`, and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub kind: &'static str,
    pub body: String,
}

struct Stub {
    event: String,
    /// When set, the event waits for `release` after the first ask.
    gated: bool,
    release: Notify,
    first_next: Mutex<Option<Instant>>,
    asked: Notify,
    answer: Mutex<Option<Answer>>,
    answered: Notify,
}

pub struct RuntimeApi {
    pub address: SocketAddr,
    stub: Arc<Stub>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Hands `event` out at the first ask.
    pub async fn start(event: &str) -> Self {
        Self::start_with(event, false).await
    }

    /// Holds `event` back after the first ask until `release`: the test looks at the world as
    /// init left it.
    pub async fn start_gated(event: &str) -> Self {
        Self::start_with(event, true).await
    }

    async fn start_with(event: &str, gated: bool) -> Self {
        let stub = Arc::new(Stub {
            event: event.to_owned(),
            gated,
            release: Notify::new(),
            first_next: Mutex::new(None),
            asked: Notify::new(),
            answer: Mutex::new(None),
            answered: Notify::new(),
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
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            stub,
            server,
        }
    }

    /// When the function first asked for an event (its init ended), waiting for it.
    pub async fn init_done(&self) -> Instant {
        loop {
            let asked = self.stub.asked.notified();
            if let Some(at) = *self.stub.first_next.lock().unwrap() {
                return at;
            }
            asked.await;
        }
    }

    /// Hands the event out (a gated stub).
    pub fn release(&self) {
        self.stub.release.notify_one();
    }

    /// The function's answer to the event (or to its failed init), waiting for it.
    pub async fn answer(&self) -> Answer {
        loop {
            let answered = self.stub.answered.notified();
            if let Some(a) = self.stub.answer.lock().unwrap().clone() {
                return a;
            }
            answered.await;
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(stub): State<Arc<Stub>>) -> impl IntoResponse {
    let first = {
        let mut first = stub.first_next.lock().unwrap();
        let is_first = first.is_none();
        first.get_or_insert_with(Instant::now);
        is_first
    };
    stub.asked.notify_waiters();
    if !first {
        // The second ask: this stub's one event is answered; the process is killed while it waits.
        std::future::pending::<()>().await;
    }
    if stub.gated {
        stub.release.notified().await;
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
        "arn:aws:lambda:us-east-1:123456789012:function:notify"
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
    *stub.answer.lock().unwrap() = Some(Answer {
        at: Instant::now(),
        kind,
        body,
    });
    stub.answered.notify_waiters();
    StatusCode::ACCEPTED
}
