//! Building the adapters and services once per Lambda execution environment (at init, never
//! per request), from the SDK configuration and `AwsConfig`.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use notify_core::domain::EmailAddress;
use notify_core::ports::{Clock, SystemClock};
use notify_core::services::App;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};

use crate::config::AwsConfig;
use crate::email::SesEmail;
use crate::provider_error::describe;
use crate::queues::SqsQueues;
use crate::scheduler::EventBridgeScheduler;
use crate::sms::SnsSms;
use crate::store::DynamoStore;

/// JSON logs, as CloudWatch Logs Insights reads them; the level from `RUST_LOG` (default info).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .init();
}

/// The SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

fn store(config: &AwsConfig, sdk: &SdkConfig) -> Arc<DynamoStore> {
    Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.table))
}

fn queues(config: &AwsConfig, sdk: &SdkConfig) -> Arc<SqsQueues> {
    Arc::new(SqsQueues::new(aws_sdk_sqs::Client::new(sdk), config.fanout_queue_url.clone(), config.dispatch_queue_url.clone()))
}

/// The API side: store, scheduler, queues.
pub fn app(config: &AwsConfig, sdk: &SdkConfig) -> App {
    let scheduler = EventBridgeScheduler::new(
        aws_sdk_scheduler::Client::new(sdk),
        config.schedule_group.clone(),
        config.fanout_queue_arn.clone(),
        config.scheduler_role_arn.clone(),
        config.scheduler_dlq_arn.clone(),
    );
    App { store: store(config, sdk), scheduler: Arc::new(scheduler), queues: queues(config, sdk), clock: Arc::new(SystemClock) }
}

pub fn fanout(config: &AwsConfig, sdk: &SdkConfig) -> Fanout {
    Fanout {
        store: store(config, sdk),
        queues: queues(config, sdk),
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
        settings: FanoutSettings {
            recipients_per_job: config.recipients_per_job,
            page_size: config.fanout_page_size,
            time_budget: std::time::Duration::from_secs(config.fanout_time_budget_secs),
            ..FanoutSettings::default()
        },
    }
}

pub fn dispatch(config: &AwsConfig, sdk: &SdkConfig) -> Result<Dispatch, String> {
    let from = EmailAddress::parse(&config.email_from).map_err(|e| format!("NOTIFY_EMAIL_FROM {e}"))?;
    Ok(Dispatch {
        store: store(config, sdk),
        email: Arc::new(SesEmail::new(aws_sdk_sesv2::Client::new(sdk), config.ses_configuration_set.clone())),
        sms: Arc::new(SnsSms::new(aws_sdk_sns::Client::new(sdk))),
        clock: Arc::new(SystemClock),
        settings: DispatchSettings { from, lease: jiff::SignedDuration::from_secs(120), max_attempts: config.max_attempts },
    })
}

/// The API key: `NOTIFY_API_KEY` (for local runs), else the secret `NOTIFY_API_KEY_SECRET_ARN`
/// that the template generates, read once at init.
pub async fn api_key(sdk: &SdkConfig) -> Result<String, String> {
    if let Some(key) = std::env::var("NOTIFY_API_KEY").ok().filter(|k| !k.is_empty()) {
        return Ok(key);
    }
    let arn = std::env::var("NOTIFY_API_KEY_SECRET_ARN").map_err(|_| "set NOTIFY_API_KEY_SECRET_ARN or NOTIFY_API_KEY".to_owned())?;
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| format!("reading the API key secret: {}", describe(&e)))?;
    out.secret_string().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).ok_or_else(|| "the API key secret is empty".to_owned())
}
