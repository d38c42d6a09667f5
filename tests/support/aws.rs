//! moto in server mode on a free loopback port (`notify_aws_local::emulator`), and the
//! resources of `template.yaml` made in it.

use std::collections::HashMap;

use aws_types::SdkConfig;
use serde_json::Value;

use notify_aws::config::AwsConfig;
use notify_aws_local::emulator;
use notify_aws_local::stack::{Stack, StackOptions};
use notify_aws_local::template::Template;

use super::python;

pub const API_KEY: &str = "local-dev-key";

/// moto (`notify_aws_local::emulator::Moto`), with the readers the tests use.
pub struct Moto {
    inner: emulator::Moto,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let inner = emulator::Moto::start(&python(), 0)
            .await
            .expect("start moto (run ./scripts/test to set up .venv)");
        let endpoint = inner.endpoint.clone();
        Self { inner, endpoint }
    }

    /// What moto recorded: `ses.RawMessage`, `sns.SMS`, ...
    pub async fn sent(&self) -> Value {
        self.inner.sent().await.expect("moto's data.json")
    }

    pub async fn raw_emails(&self) -> Vec<Value> {
        emulator::raw_emails(&self.sent().await)
    }

    pub async fn sms(&self) -> Vec<Value> {
        emulator::sms(&self.sent().await)
    }
}

/// The functions' SDK configuration, pointed at `endpoint` (moto or the fault proxy).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    emulator::sdk_config(endpoint)
}

/// The fault proxy (`crates/aws-local/aws_fault_proxy.py`) in front of moto.
pub struct FaultProxy {
    _inner: emulator::FaultProxy,
    pub endpoint: String,
}

impl FaultProxy {
    pub async fn start(upstream: &str, rates: &Value) -> Self {
        let inner = emulator::FaultProxy::start(&python(), upstream, rates)
            .await
            .expect("start the fault proxy");
        let endpoint = inner.endpoint.clone();
        Self {
            _inner: inner,
            endpoint,
        }
    }

    /// Changes some rates (the others stay).
    pub async fn set(&self, rates: Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_faults", self.endpoint))
            .body(rates.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// `{"rates": {...}, "injected": {fault: count}, "calls": {"service.Operation": count}}`.
    pub async fn report(&self) -> Value {
        reqwest::get(format!("{}/_faults", self.endpoint))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// How the world differs from the default one.
#[derive(Clone)]
pub struct WorldOptions {
    /// Fault rates for the proxy (`aws_fault_proxy.py`); none: the functions talk to moto.
    pub faults: Option<Value>,
    /// The queues' visibility timeouts (seconds).
    pub fanout_visibility: u32,
    pub dispatch_visibility: u32,
    /// The dispatch queue's `maxReceiveCount`, and the functions told so.
    pub dispatch_max_receives: u32,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            faults: None,
            fanout_visibility: 360,
            dispatch_visibility: 180,
            // A message that keeps failing reaches its dead-letter queue after 5 receives
            // instead of 10: with retries doubling from 1 s, in about 30 s instead of 9 min.
            dispatch_max_receives: 5,
        }
    }
}

/// moto with the stack's resources, as `template.yaml` declares them.
pub struct AwsWorld {
    pub moto: Moto,
    /// In the functions' way, when the world has faults.
    pub proxy: Option<FaultProxy>,
    /// What the functions use: through the proxy when there is one.
    pub sdk: SdkConfig,
    /// Straight to moto: for setting up, and for AWS's own moves (a schedule firing).
    pub direct: SdkConfig,
    pub config: AwsConfig,
    pub fanout_dlq_url: String,
    pub dispatch_dlq_url: String,
    /// What was made, by logical id.
    pub stack: Stack,
}

impl AwsWorld {
    pub async fn start() -> Self {
        Self::start_with(WorldOptions::default()).await
    }

    /// The stack made from `template.yaml` itself (`notify_aws_local::stack`), and the
    /// configuration the template gives the functions, with changes so that tests wait less:
    /// retries come back after 1 s instead of 5, and the dispatch queue redrives after
    /// `dispatch_max_receives` (its functions told so, as the template tells them its count).
    pub async fn start_with(options: WorldOptions) -> Self {
        let moto = Moto::start().await;
        let sdk = sdk_config(&moto.endpoint).await;
        let template = Template::load(&super::repo_root().join("template.yaml")).unwrap();
        let stack = Stack::create(
            &sdk,
            &template,
            &StackOptions {
                name: "notify".into(),
                parameters: [("SenderAddress".into(), "notify@example.com".into())].into(),
                visibility_timeouts: [
                    ("FanoutQueue".into(), options.fanout_visibility),
                    ("DispatchQueue".into(), options.dispatch_visibility),
                ]
                .into(),
                max_receive_counts: [("DispatchQueue".into(), options.dispatch_max_receives)]
                    .into(),
                environment: vec![(
                    "NOTIFY_DISPATCH_MAX_RECEIVES".into(),
                    options.dispatch_max_receives.to_string(),
                )],
                secret_values: [("ApiKeySecret".into(), API_KEY.into())].into(),
            },
        )
        .await
        .expect("make the stack of template.yaml in moto");
        // One configuration for the three functions: the union of what the template gives each.
        let variables: HashMap<String, String> = stack
            .functions
            .iter()
            .flat_map(|f| f.environment.iter().cloned())
            .collect();
        let mut config = AwsConfig::from_vars(&|name| variables.get(name).cloned())
            .expect("the template's variables make a configuration");
        config.retry_base_secs = 1;
        let fanout_dlq_url = stack.queue_url("FanoutDeadLetterQueue").unwrap().to_owned();
        let dispatch_dlq_url = stack
            .queue_url("DispatchDeadLetterQueue")
            .unwrap()
            .to_owned();
        let direct = sdk.clone();
        let (proxy, sdk) = match &options.faults {
            Some(rates) => {
                let proxy = FaultProxy::start(&moto.endpoint, rates).await;
                let sdk = sdk_config(&proxy.endpoint).await;
                (Some(proxy), sdk)
            }
            None => (None, sdk),
        };
        Self {
            moto,
            proxy,
            sdk,
            direct,
            config,
            fanout_dlq_url,
            dispatch_dlq_url,
            stack,
        }
    }

    /// What Lambda and `template.yaml` give the function built as `binary` (`api`, `fanout`,
    /// `dispatch`), with the first key's secret `api_key_secret_arn` and less logging; the
    /// caller adds `AWS_LAMBDA_RUNTIME_API` and `AWS_ENDPOINT_URL`.
    pub fn function_environment(
        &self,
        binary: &str,
        api_key_secret_arn: &str,
    ) -> Vec<(String, String)> {
        let function = self
            .stack
            .functions
            .iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("template.yaml has no function built as {binary}"));
        let mut env =
            notify_aws_local::lambda::lambda_environment(&function.logical_id, function.memory_mb);
        env.extend(function.environment.iter().cloned());
        env.retain(|(name, _)| name != "RUST_LOG" && name != "NOTIFY_API_KEY_SECRET_ARN");
        env.push(("RUST_LOG".into(), "warn".into()));
        env.push((
            "NOTIFY_API_KEY_SECRET_ARN".into(),
            api_key_secret_arn.into(),
        ));
        env
    }

    /// The secret that `template.yaml` generates for the stack's first API key, holding
    /// `value` (made straight in moto); its ARN.
    pub async fn first_key_secret(&self, value: &str) -> String {
        self.secret("notify-api-key", value).await
    }

    /// A secret made in moto, by its name and value; answers its ARN.
    pub async fn secret(&self, name: &str, value: &str) -> String {
        aws_sdk_secretsmanager::Client::new(&self.direct)
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create the secret {name} in moto: {e}"))
            .arn
            .unwrap()
    }

    /// Web Push on: a new VAPID key pair, its private key in a secret as the stack makes it.
    pub async fn with_vapid_key(&mut self) {
        let private = notify_core::web_push::VapidKey::generate();
        let public = notify_core::web_push::VapidKey::from_pkcs8(&private)
            .unwrap()
            .public_key();
        self.config.vapid_key_secret_arn = Some(self.secret("notify-vapid-key", &private).await);
        self.config.vapid_public_key = Some(public);
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn scheduler(&self) -> aws_sdk_scheduler::Client {
        aws_sdk_scheduler::Client::new(&self.sdk)
    }

    /// The target input of the schedule of notification `id`: what it puts on the queue when it fires.
    pub async fn schedule_input(&self, id: &str) -> String {
        let s = self
            .scheduler()
            .get_schedule()
            .name(id)
            .group_name(&self.config.schedule_group)
            .send()
            .await
            .unwrap();
        let target = s.target().unwrap();
        assert_eq!(target.arn(), self.config.fanout_queue_arn);
        target.input().unwrap().to_owned()
    }

    /// Receives what is on a queue (up to `max`) as a Lambda SQS event, the way the event
    /// source mapping would deliver it.
    pub async fn receive_event(
        &self,
        queue_url: &str,
        max: i32,
    ) -> aws_lambda_events::sqs::SqsEvent {
        let out = self
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.min(10))
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        sqs_event(out.messages())
    }

    /// Deletes from the queue every record the handler did not report as failed, as the event
    /// source mapping does with `ReportBatchItemFailures`.
    pub async fn settle(
        &self,
        queue_url: &str,
        event: &aws_lambda_events::sqs::SqsEvent,
        response: &aws_lambda_events::sqs::SqsBatchResponse,
    ) {
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for r in &event.records {
            if !failed.contains(&r.message_id.as_deref().unwrap_or_default()) {
                self.sqs()
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(r.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Plays the event source mappings until both queues are empty: fanout over everything on
    /// the fanout queue, then dispatch over everything on the dispatch queue, each with the
    /// stack's wiring, deleting what the handlers did not report as failed (they must report
    /// nothing).
    /// Every fanout job, one message at a time, until the fanout queue is empty: a group send
    /// of a large group is 33 messages (the split, a job per segment), more when SQS repeats
    /// some. Every job must succeed.
    pub async fn run_fanout(&self) {
        let fanout = notify_aws::wiring::fanout(&self.config, &self.sdk);
        for _ in 0..1000 {
            let e = self.receive_event(&self.config.fanout_queue_url, 1).await;
            if e.records.is_empty() {
                return;
            }
            let r = notify_aws::handlers::fanout_event(
                &fanout,
                e.clone(),
                self.config.fanout_max_receives,
            )
            .await;
            assert!(r.batch_item_failures.is_empty(), "fanout failed: {r:?}");
            self.settle(&self.config.fanout_queue_url, &e, &r).await;
        }
        panic!("the fanout queue did not empty in 1000 receives");
    }

    pub async fn run_queues(&self) {
        use notify_aws::handlers::dispatch_event;
        use notify_aws::wiring;
        self.run_fanout().await;
        let dispatch = wiring::dispatch(&self.config, &self.sdk).unwrap();
        // A job that found its deliveries claimed by a copy of itself (SQS delivered it twice,
        // into one batch) comes back after its retry delay: wait for it once the queue is empty.
        let mut retried = false;
        for _ in 0..1000 {
            let e = self
                .receive_event(&self.config.dispatch_queue_url, 10)
                .await;
            if e.records.is_empty() {
                if !std::mem::take(&mut retried) {
                    break;
                }
                let delay = self.config.retry_base_secs + 1;
                tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
                continue;
            }
            let r = dispatch_event(&dispatch, e.clone(), dispatch_deadline()).await;
            retried |= !r.batch_item_failures.is_empty();
            self.settle(&self.config.dispatch_queue_url, &e, &r).await;
        }
    }
}

/// Received SQS messages as the Lambda event the event source mapping makes of them.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> aws_lambda_events::sqs::SqsEvent {
    notify_aws_local::event_source::sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:notify")
}

/// An API Gateway (HTTP API, payload 2.0) event from `events/`, sent through the api handler.
#[derive(Clone)]
pub struct ApiHandler {
    adapter: lambda_http::Adapter<'static, axum::response::Response, axum::Router>,
}

pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
    pub headers: Value,
}

impl ApiHandler {
    pub fn new(world: &AwsWorld) -> Self {
        let first = std::sync::Arc::new(notify_core::ports::StaticKey(API_KEY.to_owned()));
        Self::from_router(notify_aws::wiring::api(&world.config, &world.sdk, first).unwrap())
    }

    /// The handler of an api function built some other way.
    pub fn from_router(router: axum::Router) -> Self {
        Self {
            adapter: lambda_http::Adapter::from(router),
        }
    }

    pub async fn call(&mut self, event: Value) -> ApiAnswer {
        use tower::{Service, ServiceExt};
        let request: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
        let event = lambda_runtime::LambdaEvent::new(request, lambda_runtime::Context::default());
        let response = self
            .adapter
            .ready()
            .await
            .unwrap()
            .call(event)
            .await
            .unwrap();
        let json = serde_json::to_value(&response).unwrap();
        let body = json["body"]
            .as_str()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::String(b.to_owned())))
            .unwrap_or(Value::Null);
        ApiAnswer {
            status: json["statusCode"].as_u64().unwrap() as u16,
            body,
            headers: json["headers"].clone(),
        }
    }
}

/// An event file from `events/`, parsed.
pub fn event(name: &str) -> Value {
    let path = super::repo_root().join("events").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// An API event with another path and body.
pub fn api_event(name: &str, path: Option<&str>, body: Option<Value>) -> Value {
    let mut e = event(name);
    if let Some(path) = path {
        e["rawPath"] = Value::String(path.to_owned());
        e["requestContext"]["http"]["path"] = Value::String(path.to_owned());
    }
    if let Some(body) = body {
        e["body"] = Value::String(body.to_string());
    }
    e
}

/// The dispatch function's `Timeout` in `template.yaml`.
pub const DISPATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// When Lambda would kill a dispatch invocation that starts now.
pub fn dispatch_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + DISPATCH_TIMEOUT
}
