//! moto in server mode on a free loopback port (see `moto_server.py` for its one change), and the
//! resources of `template.yaml` made in it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_types::SdkConfig;
use serde_json::Value;

use notify_aws::config::AwsConfig;

use super::{free_port, python, wait_until};

pub const API_KEY: &str = "local-dev-key";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let script = super::repo_root().join("tests/support/moto_server.py");
        let child = Command::new(python())
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (run ./scripts/test to set up .venv): {e}",
                    script.display()
                )
            });
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "moto did not start on port {port}");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// What moto recorded: `ses.RawMessage`, `sns.SMS`, ...
    pub async fn sent(&self) -> Value {
        reqwest::get(format!("{}/moto-api/data.json", self.endpoint))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Each `{"source", "destinations", "raw_data", "id"}`.
    pub async fn raw_emails(&self) -> Vec<Value> {
        let data = self.sent().await;
        data["ses"]["RawMessage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Each `{"phone_number", "message", "message_id"}`.
    pub async fn sms(&self) -> Vec<Value> {
        let data = self.sent().await;
        data["sns"]["SMS"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The functions' SDK configuration, pointed at `endpoint` (moto or the fault proxy).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    notify_aws::wiring::sdk_config_with(
        "us-east-1".into(),
        aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"),
        Some(endpoint.into()),
        notify_aws::wiring::https_client(false),
    )
}

/// The fault proxy (`aws_fault_proxy.py`) in front of moto.
pub struct FaultProxy {
    child: Child,
    pub endpoint: String,
}

impl FaultProxy {
    pub async fn start(upstream: &str, rates: &Value) -> Self {
        let port = free_port();
        let script = super::repo_root().join("tests/support/aws_fault_proxy.py");
        let child = Command::new(python())
            .arg(&script)
            .args([port.to_string(), upstream.to_owned(), rates.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "the fault proxy did not start on port {port}");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
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

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            faults: None,
            fanout_visibility: 360,
            dispatch_visibility: 180,
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
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility: u32,
    dlq_arn: Option<&str>,
) -> (String, String) {
    let mut req = sqs.create_queue().queue_name(name).attributes(
        QueueAttributeName::VisibilityTimeout,
        visibility.to_string(),
    );
    if let Some(arn) = dlq_arn {
        req = req.attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#),
        );
    }
    let url = req.send().await.unwrap().queue_url.unwrap();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = attrs.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
    (url, arn)
}

impl AwsWorld {
    pub async fn start() -> Self {
        Self::start_with(WorldOptions::default()).await
    }

    pub async fn start_with(options: WorldOptions) -> Self {
        let moto = Moto::start().await;
        let sdk = sdk_config(&moto.endpoint).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .unwrap()
        };
        let gsi = |n: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(n)
                .key_schema(key(&format!("{n}PK"), KeyType::Hash))
                .key_schema(key(&format!("{n}SK"), KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap()
        };
        ddb.create_table()
            .table_name("notify")
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(
                ["PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"]
                    .iter()
                    .map(|a| attr(a))
                    .collect(),
            ))
            .key_schema(key("PK", KeyType::Hash))
            .key_schema(key("SK", KeyType::Range))
            .global_secondary_indexes(gsi("GSI1"))
            .global_secondary_indexes(gsi("GSI2"))
            .send()
            .await
            .unwrap();
        ddb.update_time_to_live()
            .table_name("notify")
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("ttl")
                    .enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let (fanout_dlq_url, fanout_dlq_arn) = queue(&sqs, "notify-fanout-dlq", 30, None).await;
        let (dispatch_dlq_url, dispatch_dlq_arn) =
            queue(&sqs, "notify-dispatch-dlq", 30, None).await;
        let (_, scheduler_dlq_arn) = queue(&sqs, "notify-scheduler-dlq", 30, None).await;
        let (fanout_url, fanout_arn) = queue(
            &sqs,
            "notify-fanout",
            options.fanout_visibility,
            Some(&fanout_dlq_arn),
        )
        .await;
        let (dispatch_url, _) = queue(
            &sqs,
            "notify-dispatch",
            options.dispatch_visibility,
            Some(&dispatch_dlq_arn),
        )
        .await;

        aws_sdk_scheduler::Client::new(&sdk)
            .create_schedule_group()
            .name("notify-sends")
            .send()
            .await
            .unwrap();
        aws_sdk_sesv2::Client::new(&sdk)
            .create_email_identity()
            .email_identity("example.com")
            .send()
            .await
            .unwrap();

        let config = AwsConfig {
            table: "notify".into(),
            fanout_queue_url: fanout_url,
            dispatch_queue_url: dispatch_url,
            fanout_queue_arn: fanout_arn,
            schedule_group: "notify-sends".into(),
            scheduler_role_arn: "arn:aws:iam::123456789012:role/notify-scheduler".into(),
            scheduler_dlq_arn: Some(scheduler_dlq_arn),
            email_from: "notify@example.com".into(),
            ses_configuration_set: None,
            max_attempts: 5,
            recipients_per_job: 50,
            fanout_page_size: 2000,
            fanout_time_budget_secs: 40,
            dispatch_time_budget_secs: 20,
            email_per_second: None,
            sms_per_second: None,
            retry_base_secs: 1,
            // As the test queues' redrive policy.
            dispatch_max_receives: 5,
            fanout_max_receives: 5,
            queue_delay_max_secs: 900,
            dispatch_send_reserve_ms: 5000,
            dispatch_lease_secs: 40,
            channel_pause_secs: 300,
            api_key_cache_secs: 30,
            api_key_rps: None,
        };
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
        }
    }

    /// The secret that `template.yaml` generates for the stack's first API key, holding
    /// `value` (made straight in moto); its ARN.
    pub async fn first_key_secret(&self, value: &str) -> String {
        aws_sdk_secretsmanager::Client::new(&self.direct)
            .create_secret()
            .name("notify-api-key")
            .secret_string(value)
            .send()
            .await
            .expect("create the API key secret in moto")
            .arn
            .unwrap()
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
}

/// Received SQS messages as the Lambda event the event source mapping makes of them.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": m.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect::<std::collections::HashMap<_, _>>()).unwrap_or_default(),
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({"Records": records})).unwrap()
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
        Self::from_router(notify_aws::wiring::api(&world.config, &world.sdk, first))
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
