//! Lambda's part: a function's binary run as Lambda runs it. Each execution environment is a
//! process with only the variables Lambda sets and the template's, asking its own Runtime API
//! (`/2018-06-01/runtime/...`, on loopback) for the next event. Environments start on demand
//! (a cold start), up to the function's concurrency, and are reused while warm. An invocation
//! still running at the function's `Timeout` is killed with its process, as Lambda does; so is
//! an environment whose process exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::emulator::{ACCOUNT, REGION};
use crate::template::FunctionSpec;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body the function posted as its response.
    Response(String),
    /// The function reported an error (the body of its error post).
    Error(String),
    /// Killed at the function's timeout.
    Timeout,
    /// The process exited (or failed its init) before answering.
    Crashed(String),
}

/// The variables Lambda sets in every execution environment; the caller adds
/// `AWS_LAMBDA_RUNTIME_API`, `AWS_ENDPOINT_URL` and the template's.
pub fn lambda_environment(function_name: &str, memory_mb: u32) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_SESSION_TOKEN", "testing".to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("local/{function_name}"),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A function: its binary, its environment, and its warm execution environments.
pub struct Function {
    pub spec: FunctionSpec,
    name: String,
    binary: PathBuf,
    environment: Vec<(String, String)>,
    concurrency: Arc<Semaphore>,
    warm: Mutex<Vec<Environment>>,
    /// Every process started, for the operator (and the tests) to see.
    started: Mutex<Vec<u32>>,
    /// Where the function's log lines go: its log group, one file for all its environments.
    log: Option<Arc<Mutex<std::fs::File>>>,
}

impl Function {
    /// `binary` in `functions_dir`, with `endpoint` as `AWS_ENDPOINT_URL`, at most
    /// `concurrency` invocations at once. Its log lines go to `<log_dir>/<logical id>.log`
    /// when a directory is given (as CloudWatch Logs keeps them, EMF lines included), else to
    /// standard error prefixed by its logical id.
    pub fn new(
        stack_name: &str,
        spec: FunctionSpec,
        functions_dir: &std::path::Path,
        endpoint: &str,
        concurrency: usize,
        log_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Arc<Self>> {
        let binary = functions_dir.join(&spec.binary);
        anyhow::ensure!(
            binary.exists(),
            "{} is not built: cargo build -p {} (./scripts/aws-local does)",
            binary.display(),
            spec.binary
        );
        let name = format!("{stack_name}-{}", spec.logical_id);
        let mut environment = lambda_environment(&name, spec.memory_mb);
        environment.push(("AWS_ENDPOINT_URL".into(), endpoint.to_owned()));
        environment.extend(spec.environment.iter().cloned());
        let log = match log_dir {
            Some(dir) => {
                let path = dir.join(format!("{}.log", spec.logical_id));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
                Some(Arc::new(Mutex::new(file)))
            }
            None => None,
        };
        Ok(Arc::new(Self {
            spec,
            name,
            binary,
            environment,
            concurrency: Arc::new(Semaphore::new(concurrency.max(1))),
            warm: Mutex::new(Vec::new()),
            started: Mutex::new(Vec::new()),
            log,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pids of every process this function started.
    pub fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }

    /// Stops every warm execution environment (an invocation under way ends with its task).
    pub async fn shutdown(&self) {
        let warm: Vec<Environment> = std::mem::take(&mut *self.warm.lock().unwrap());
        for mut environment in warm {
            let _ = environment.child.kill().await;
        }
    }

    /// Runs one invocation with `event` in a warm environment, or a new one.
    pub async fn invoke(&self, event: String) -> Outcome {
        let Ok(_permit) = self.concurrency.clone().acquire_owned().await else {
            return Outcome::Crashed("shut down".into());
        };
        let warm = self.warm.lock().unwrap().pop();
        let mut environment = match warm {
            Some(e) => e,
            None => match self.start().await {
                Ok(e) => e,
                Err(e) => return Outcome::Crashed(format!("{e:#}")),
            },
        };
        let outcome = environment.invoke(event, self.spec.timeout).await;
        match outcome {
            Outcome::Response(_) | Outcome::Error(_) => {
                self.warm.lock().unwrap().push(environment);
            }
            Outcome::Timeout | Outcome::Crashed(_) => {
                tracing::warn!(function = %self.name, ?outcome, "execution environment discarded");
            }
        }
        outcome
    }

    async fn start(&self) -> anyhow::Result<Environment> {
        let runtime = RuntimeApi::start(&self.name).await?;
        let mut child = Command::new(&self.binary)
            .env_clear()
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", runtime.address.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        self.started.lock().unwrap().push(pid);
        tracing::info!(function = %self.name, pid, "execution environment started");
        // The function's log lines, as CloudWatch Logs would show them, prefixed by its name.
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let prefix = self.spec.logical_id.clone();
            let log = self.log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match &log {
                        // One write per line, on a file opened to append: lines of the
                        // function's environments never interleave.
                        Some(file) => {
                            use std::io::Write;
                            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                            let _ = file.write_all(format!("{line}\n").as_bytes());
                        }
                        None => eprintln!("{prefix} | {line}"),
                    }
                }
            });
        }
        Ok(Environment { child, runtime })
    }
}

struct Environment {
    child: Child,
    runtime: RuntimeApi,
}

impl Environment {
    async fn invoke(&mut self, event: String, timeout: Duration) -> Outcome {
        let (answer, answered) = oneshot::channel();
        let deadline = jiff::Timestamp::now() + timeout;
        let invocation = Invocation {
            request_id: ulid::Ulid::new().to_string().to_lowercase(),
            event,
            deadline_ms: deadline.as_millisecond(),
            answer,
        };
        if self.runtime.invocations.send(invocation).await.is_err() {
            return Outcome::Crashed("the runtime API is gone".into());
        }
        tokio::select! {
            answer = answered => answer.unwrap_or_else(|_| Outcome::Crashed("no answer".into())),
            status = self.child.wait() => {
                let init_error = self.runtime.state.init_error.lock().unwrap().clone();
                Outcome::Crashed(format!("the process exited ({status:?}){}", init_error.map(|e| format!(": {e}")).unwrap_or_default()))
            }
            _ = tokio::time::sleep(timeout) => Outcome::Timeout,
        }
    }
}

struct Invocation {
    request_id: String,
    event: String,
    deadline_ms: i64,
    answer: oneshot::Sender<Outcome>,
}

struct RuntimeState {
    function_arn: String,
    next: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<String>>,
}

/// One execution environment's Runtime API.
struct RuntimeApi {
    address: SocketAddr,
    invocations: mpsc::Sender<Invocation>,
    state: Arc<RuntimeState>,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    async fn start(function_name: &str) -> anyhow::Result<Self> {
        let (invocations, next) = mpsc::channel(1);
        let state = Arc::new(RuntimeState {
            function_arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"),
            next: tokio::sync::Mutex::new(next),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(|s, p, b| answer(s, p, b, false)),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(|s, p, b| answer(s, p, b, true)),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            invocations,
            state,
            server,
        })
    }
}

async fn next_invocation(State(state): State<Arc<RuntimeState>>) -> Response {
    let Some(invocation) = state.next.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    state
        .pending
        .lock()
        .unwrap()
        .insert(invocation.request_id.clone(), invocation.answer);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", invocation.request_id);
    set(
        "lambda-runtime-deadline-ms",
        invocation.deadline_ms.to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{}",
            jiff::Timestamp::now().as_second(),
            "0".repeat(24)
        ),
    );
    set("content-type", "application/json".into());
    (headers, invocation.event).into_response()
}

async fn answer(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: String,
    error: bool,
) -> StatusCode {
    let Some(waiting) = state.pending.lock().unwrap().remove(&id) else {
        return StatusCode::BAD_REQUEST;
    };
    let _ = waiting.send(if error {
        Outcome::Error(body)
    } else {
        Outcome::Response(body)
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: String) -> StatusCode {
    *state.init_error.lock().unwrap() = Some(body);
    StatusCode::ACCEPTED
}
