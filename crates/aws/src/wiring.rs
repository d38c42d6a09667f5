//! Building the adapters and services once per Lambda execution environment (at init, never
//! per request), from the SDK configuration and `AwsConfig`.

use std::sync::Arc;

use anyhow::Context;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_types::retry::RetryConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use notify_core::api::ApiOptions;
use notify_core::backoff::Backoff;
use notify_core::domain::EmailAddress;
use notify_core::domain::push::{PushMessage, PushSubscription};
use notify_core::fcm::{FcmSender, PushProviders, ServiceAccount};
use notify_core::ports::{
    Clock, EmailSender, FirstKey, SigningKey, StaticKey, StaticSigningKey, SystemClock,
    WebhookPoster,
};
use notify_core::ports::{PushError, PushSender, SendError};
use notify_core::services::App;
use notify_core::services::api_keys::ApiKeys;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use notify_core::services::inbox::Inbox;
use notify_core::services::preview::Preview;
use notify_core::services::unsubscribe::UnsubscribeLinks;
use notify_core::services::user_tokens::UserTokens;
use notify_core::services::webhooks::Webhooks;
use notify_core::web_push::{VapidKey, WebPushSender};
use notify_core::webhook_http::HttpPoster;

use crate::config::AwsConfig;
use crate::email::SesEmail;
use crate::handlers::{DispatchConsumer, FeedbackConsumer};
use crate::lazy_client::LazyClient;
use crate::queues::SqsQueues;
use crate::scheduler::EventBridgeScheduler;
use crate::secret::SecretValue;
use crate::sms::SnsSms;
use crate::sms_opt_outs::SmsOptOuts;
use crate::store::DynamoStore;

/// JSON logs, as CloudWatch Logs Insights reads them; the levels from `RUST_LOG` (default info):
/// a level, or `target=level` pairs (`info,notify_core=debug`). Targets only: `EnvFilter`'s span
/// and field filters would link a regex engine into every function for a feature nobody sets.
pub fn init_tracing() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (levels, bad) = match rust_log.as_deref().map(str::parse::<Targets>) {
        Some(Ok(levels)) => (levels, None),
        Some(Err(e)) => (Targets::new().with_default(Level::INFO), Some(e)),
        None => (Targets::new().with_default(Level::INFO), None),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .without_time()
                .with_target(false),
        )
        .with(levels)
        .init();
    if let Some(e) = bad {
        tracing::warn!(error = %e, "RUST_LOG is not a level or target=level list; logging at info");
    }
}

/// The SDK configuration the way Lambda hands it to a function: the region in `AWS_REGION`, the
/// execution role's credentials in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`, and `AWS_ENDPOINT_URL` when set (an emulator). Not the SDK's default
/// chain: it looks for profile files, SSO, web identity, ECS and the instance metadata service,
/// none of which a Lambda function has, and links them all in (STS and SSO clients included).
pub fn sdk_config() -> anyhow::Result<SdkConfig> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{name} is not set (Lambda sets it for every function)"))
    };
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN").ok(),
        None,
        "lambda-environment",
    );
    let native_roots = std::env::var("NOTIFY_TLS_ROOTS").is_ok_and(|v| v == "native");
    Ok(sdk_config_with(
        var("AWS_REGION")?,
        credentials,
        var("AWS_ENDPOINT_URL").ok(),
        crate::https::https_client(native_roots),
    ))
}

/// The SDK configuration from its parts, with this project's retries.
pub fn sdk_config_with(
    region: String,
    credentials: Credentials,
    endpoint_url: Option<String>,
    http_client: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> SdkConfig {
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client)
        .retry_config(retry_config())
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new());
    builder.set_endpoint_url(endpoint_url);
    builder.build()
}

/// The SDK's standard retries (throttling, 5xx, timeouts; jittered exponential backoff), with
/// five attempts instead of three, since DynamoDB and SQS throttle and fail in bursts, and
/// pauses of at most 2 s instead of 20, so that a call ends well within a function's timeout
/// (a call still failing is retried by the queue, later).
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(5)
        .with_max_backoff(std::time::Duration::from_secs(2))
}

/// DynamoDB answers in milliseconds, so its retries start at 25 ms, as the AWS SDK for Java
/// does for DynamoDB, not at the standard 1 s: a throttled or failed write of a send's outcome
/// is tried again well within the time dispatch keeps for it, and a call that keeps failing
/// comes back to the caller's own loop, which knows the invocation's deadline.
pub fn dynamodb_retry_config() -> RetryConfig {
    retry_config().with_initial_backoff(std::time::Duration::from_millis(25))
}

/// Sends to SES and SNS: one quick retry at most. Dispatch paces and retries sends itself,
/// against the invocation's deadline; the SDK's own pauses would hide the time a send takes,
/// and a send cut off by Lambda's timeout may have happened without being recorded.
pub fn send_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(2)
        .with_max_backoff(std::time::Duration::from_millis(200))
}

type Secrets = LazyClient<aws_sdk_secretsmanager::Client>;

/// A client made at its first call (`lazy_client`), from the function's SDK configuration.
fn lazy<C: Send + Sync + 'static>(sdk: &SdkConfig, make: fn(&SdkConfig) -> C) -> LazyClient<C> {
    let sdk = sdk.clone();
    LazyClient::new(move || make(&sdk))
}

fn store(config: &AwsConfig, sdk: &SdkConfig) -> Arc<DynamoStore> {
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(dynamodb_retry_config())
        .build();
    Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb), &config.table)
            .with_retention(config.retention),
    )
}

fn queues(config: &AwsConfig, sdk: &SdkConfig) -> Arc<SqsQueues> {
    Arc::new(SqsQueues::new(
        aws_sdk_sqs::Client::new(sdk),
        config.fanout_queue_url.clone(),
        config.dispatch_queue_url.clone(),
        config.webhook_queue_url.clone(),
    ))
}

/// The API side: store, scheduler, queues.
pub fn app(config: &AwsConfig, sdk: &SdkConfig, secrets: Secrets) -> anyhow::Result<App> {
    let queues = queues(config, sdk);
    let scheduler = EventBridgeScheduler::new(
        lazy(sdk, aws_sdk_scheduler::Client::new),
        queues.clone(),
        std::time::Duration::from_secs(config.queue_delay_max_secs),
        config.schedule_group.clone(),
        config.fanout_queue_arn.clone(),
        config.scheduler_role_arn.clone(),
        config.scheduler_dlq_arn.clone(),
    );
    let store = store(config, sdk);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Two keys, each read once at its first use: rotating one leaves the other's links or
    // tokens alone.
    let signing = signing_key(config, || secrets.clone());
    let unsubscribe = Arc::new(UnsubscribeLinks::new(signing, &config.public_url));
    let token_key = user_token_key(config, secrets);
    let from = EmailAddress::parse(&config.email_from).context("NOTIFY_EMAIL_FROM")?;
    Ok(App {
        preview: Arc::new(Preview::new(
            store.clone(),
            clock.clone(),
            unsubscribe.clone(),
            from,
        )),
        webhooks: webhooks(config, store.clone(), queues.clone()),
        // No live feed: dispatch runs in other execution environments, so a stream sends what
        // is stored and the browser comes back (`api::inbox::POLL_RETRY`).
        inbox: Arc::new(Inbox::new(store.clone(), clock.clone())),
        user_tokens: Arc::new(UserTokens::new(token_key, clock)),
        store,
        scheduler: Arc::new(scheduler),
        queues,
        clock: Arc::new(SystemClock),
        unsubscribe,
    })
}

/// Webhook events and their posts. The HTTP client's TLS is set up at the first post, not
/// at init.
pub fn webhooks(
    config: &AwsConfig,
    store: Arc<DynamoStore>,
    queues: Arc<SqsQueues>,
) -> Arc<Webhooks> {
    let allow = config.webhook_allow_private;
    Arc::new(
        Webhooks::new(
            store,
            queues,
            Arc::new(LazyPoster {
                allow_internal: allow,
                poster: Default::default(),
            }),
            Arc::new(SystemClock),
        )
        .allowing_internal(allow)
        .with_cache_for(std::time::Duration::from_secs(config.webhook_cache_secs)),
    )
}

/// The webhook function's side: posting the jobs of the webhook queue.
pub fn webhook_consumer(config: &AwsConfig, sdk: &SdkConfig) -> Arc<Webhooks> {
    webhooks(config, store(config, sdk), queues(config, sdk))
}

/// `HttpPoster`, made at the first post: most invocations of dispatch post nothing, and its
/// TLS set-up would be init time on every cold start.
struct LazyPoster {
    allow_internal: bool,
    poster: tokio::sync::OnceCell<HttpPoster>,
}

#[async_trait::async_trait]
impl WebhookPoster for LazyPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<(), String> {
        let poster = self
            .poster
            .get_or_try_init(|| async { HttpPoster::new(self.allow_internal) })
            .await
            .map_err(|e| format!("the HTTP client could not be made: {e}"))?;
        poster.post(url, headers, body).await
    }
}

/// `WebPushSender`, made at the first push: its key is read from Secrets Manager then (no AWS
/// call at init), and its TLS set-up would be init time otherwise.
struct LazyPush {
    key: SecretValue,
    /// The public key the api serves: a private key that does not match it would sign pushes
    /// every browser's push service refuses.
    public_key: Option<String>,
    subject: String,
    allow_internal: bool,
    sender: tokio::sync::OnceCell<WebPushSender>,
}

#[async_trait::async_trait]
impl PushSender for LazyPush {
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError> {
        let sender = self
            .sender
            .get_or_try_init(|| async {
                let raw = self.key.read().await.map_err(|e| {
                    SendError::transient(format!("the VAPID key could not be read: {e}"))
                })?;
                let key = VapidKey::from_pkcs8(&raw).map_err(|e| {
                    SendError::permanent(format!("the VAPID key in its secret: {e}"))
                })?;
                if let Some(expected) = &self.public_key
                    && key.public_key() != *expected
                {
                    return Err(SendError::permanent(
                        "the VAPID key in its secret does not match NOTIFY_VAPID_PUBLIC_KEY \
                         (the stack's VapidPublicKey)",
                    ));
                }
                WebPushSender::new(key, &self.subject, self.allow_internal).map_err(|e| {
                    SendError::transient(format!("the HTTP client could not be made: {e}"))
                })
            })
            .await
            .map_err(|e| PushError::Failed(e.clone()))?;
        sender.send(subscription, message).await
    }
}

/// `FcmSender`, made at the first push to an app: the service account is read from Secrets
/// Manager then (no AWS call at init).
struct LazyFcm {
    account: SecretValue,
    api_url: String,
    sender: tokio::sync::OnceCell<FcmSender>,
}

#[async_trait::async_trait]
impl PushSender for LazyFcm {
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError> {
        let sender = self
            .sender
            .get_or_try_init(|| async {
                let json = self
                    .account
                    .read()
                    .await
                    .map_err(|e| format!("the FCM service account secret: {e}"))?;
                FcmSender::new(ServiceAccount::parse(&json)?, &self.api_url)
            })
            .await
            .map_err(|e| PushError::Failed(SendError::transient(e)))?;
        sender.send(subscription, message).await
    }
}

/// The key of unsubscribe links: `NOTIFY_UNSUBSCRIBE_KEY` (for local runs) or else the secret
/// the template generates, read at its first use (no AWS call at init).
fn signing_key(config: &AwsConfig, secrets: impl FnOnce() -> Secrets) -> Arc<dyn SigningKey> {
    key_from(
        "NOTIFY_UNSUBSCRIBE_KEY",
        config.unsubscribe_key_secret_arn.as_ref(),
        secrets,
    )
}

/// The key of user tokens, the same way: `NOTIFY_USER_TOKEN_KEY` or its own secret.
fn user_token_key(config: &AwsConfig, secrets: Secrets) -> Arc<dyn SigningKey> {
    key_from(
        "NOTIFY_USER_TOKEN_KEY",
        config.user_token_key_secret_arn.as_ref(),
        || secrets,
    )
}

fn key_from(
    variable: &'static str,
    secret_arn: Option<&String>,
    secrets: impl FnOnce() -> Secrets,
) -> Arc<dyn SigningKey> {
    match (
        std::env::var(variable).ok().filter(|k| !k.is_empty()),
        secret_arn,
    ) {
        (Some(key), _) => Arc::new(StaticSigningKey(key.into_bytes())),
        (None, Some(arn)) => Arc::new(SecretValue::new(secrets(), arn.clone())),
        // A deployment without the secret cannot sign; each link or token asked for says so.
        (None, None) => Arc::new(MissingKey(variable)),
    }
}

/// Unsubscribe links under `NOTIFY_PUBLIC_URL`, signed with the deployment's key.
pub fn unsubscribe_links(config: &AwsConfig, secrets: &Secrets) -> Arc<UnsubscribeLinks> {
    Arc::new(UnsubscribeLinks::new(
        signing_key(config, || secrets.clone()),
        &config.public_url,
    ))
}

/// The variable that would have given the key (its secret's is the same with `_SECRET_ARN`).
struct MissingKey(&'static str);

#[async_trait::async_trait]
impl SigningKey for MissingKey {
    async fn key(&self) -> Result<Vec<u8>, notify_core::ports::BoxError> {
        Err(format!("neither {0} nor {0}_SECRET_ARN is set", self.0).into())
    }
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

/// The feedback side: the store, where bounces, complaints and SMS opt-outs suppress
/// addresses and SES events mark deliveries, and SNS's list of opted-out numbers.
pub fn feedback(config: &AwsConfig, sdk: &SdkConfig) -> FeedbackConsumer {
    let store = store(config, sdk);
    FeedbackConsumer {
        webhooks: webhooks(config, store.clone(), queues(config, sdk)),
        store,
        sms_opt_outs: SmsOptOuts::new(lazy(sdk, aws_sdk_sns::Client::new)),
    }
}

/// The dispatch side, sending by SES and SNS.
pub fn dispatch(config: &AwsConfig, sdk: &SdkConfig) -> anyhow::Result<DispatchConsumer> {
    let email = Arc::new(SesEmail::new(
        lazy(sdk, |sdk| {
            aws_sdk_sesv2::Client::from_conf(
                aws_sdk_sesv2::config::Builder::from(sdk)
                    .retry_config(send_retry_config())
                    .build(),
            )
        }),
        config.ses_configuration_set.clone(),
    ));
    dispatch_with(config, sdk, email)
}

/// The dispatch side with another email sender (the fault-injecting one of the tests).
pub fn dispatch_with(
    config: &AwsConfig,
    sdk: &SdkConfig,
    email: Arc<dyn EmailSender>,
) -> anyhow::Result<DispatchConsumer> {
    let from = EmailAddress::parse(&config.email_from).context("NOTIFY_EMAIL_FROM")?;
    // One DynamoDB and one SQS client for the function: each client made is init time.
    // One Secrets Manager client, made at the first read, for the signing key and FCM's account.
    let secrets = lazy(sdk, aws_sdk_secretsmanager::Client::new);
    let (store, queues) = (store(config, sdk), queues(config, sdk));
    let dispatch = Dispatch::new(
        store.clone(),
        email,
        Arc::new(SnsSms::new(lazy(sdk, |sdk| {
            aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(sdk)
                    .retry_config(send_retry_config())
                    .build(),
            )
        }))),
        Arc::new(SystemClock),
        DispatchSettings {
            max_attempts: config.max_attempts,
            email_per_second: config.email_per_second,
            sms_per_second: config.sms_per_second,
            time_budget: std::time::Duration::from_secs(config.dispatch_time_budget_secs),
            send_reserve: std::time::Duration::from_millis(config.dispatch_send_reserve_ms),
            lease: jiff::SignedDuration::from_secs(config.dispatch_lease_secs as i64),
            pause: std::time::Duration::from_secs(config.channel_pause_secs),
            ..DispatchSettings::new(from)
        },
    );
    let dispatch = dispatch
        .with_unsubscribe(unsubscribe_links(config, &secrets))
        .with_webhooks(webhooks(config, store, queues.clone()));
    let web_push: Option<Arc<dyn PushSender>> = config.vapid_key_secret_arn.as_ref().map(|arn| {
        Arc::new(LazyPush {
            key: SecretValue::new(secrets.clone(), arn.clone()),
            public_key: config.vapid_public_key.clone(),
            subject: config.vapid_subject.clone(),
            allow_internal: config.webhook_allow_private,
            sender: Default::default(),
        }) as Arc<dyn PushSender>
    });
    let fcm: Option<Arc<dyn PushSender>> =
        config.fcm_service_account_secret_arn.as_ref().map(|arn| {
            Arc::new(LazyFcm {
                account: SecretValue::new(secrets.clone(), arn.clone()),
                api_url: config.fcm_api_url.clone(),
                sender: Default::default(),
            }) as Arc<dyn PushSender>
        });
    let dispatch = dispatch.with_push(Arc::new(PushProviders { web_push, fcm }));
    Ok(DispatchConsumer {
        dispatch,
        queues,
        backoff: Backoff {
            base: std::time::Duration::from_secs(config.retry_base_secs),
            max: std::time::Duration::from_secs(900),
        },
        max_receives: config.dispatch_max_receives,
        pause: std::time::Duration::from_secs(config.channel_pause_secs.min(900)),
    })
}

/// The stack's first API key: `NOTIFY_API_KEY` (for local runs), else the secret
/// `NOTIFY_API_KEY_SECRET_ARN` that the template generates, read at the first request that needs
/// it (no AWS call at init).
pub fn first_key(secrets: &Secrets) -> anyhow::Result<Arc<dyn FirstKey>> {
    if let Some(key) = std::env::var("NOTIFY_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        return Ok(Arc::new(StaticKey(key)));
    }
    let arn = std::env::var("NOTIFY_API_KEY_SECRET_ARN")
        .context("set NOTIFY_API_KEY_SECRET_ARN or NOTIFY_API_KEY")?;
    Ok(Arc::new(SecretValue::new(secrets.clone(), arn)))
}

/// The api function's HTTP API: its first key and the signing key are read through one
/// Secrets Manager client, made at the first read.
pub fn api_from_env(config: &AwsConfig, sdk: &SdkConfig) -> anyhow::Result<axum::Router> {
    let secrets = lazy(sdk, aws_sdk_secretsmanager::Client::new);
    let first = first_key(&secrets)?;
    api_with(config, sdk, first, secrets)
}

/// The HTTP API: the API side's services, and the keys it accepts.
pub fn api(
    config: &AwsConfig,
    sdk: &SdkConfig,
    first: Arc<dyn FirstKey>,
) -> anyhow::Result<axum::Router> {
    api_with(
        config,
        sdk,
        first,
        lazy(sdk, aws_sdk_secretsmanager::Client::new),
    )
}

fn api_with(
    config: &AwsConfig,
    sdk: &SdkConfig,
    first: Arc<dyn FirstKey>,
    secrets: Secrets,
) -> anyhow::Result<axum::Router> {
    let app = app(config, sdk, secrets)?;
    let keys = ApiKeys::new(
        app.store.clone(),
        first,
        app.clock.clone(),
        std::time::Duration::from_secs(config.api_key_cache_secs),
    )
    .with_limit(config.api_key_rps);
    let cors_origins = notify_core::api::parse_cors_origins(&config.cors_origins)
        .map_err(|e| anyhow::anyhow!("NOTIFY_CORS_ORIGINS: {e}"))?;
    Ok(notify_core::api::router(
        app,
        Arc::new(keys),
        ApiOptions {
            metrics: None,
            cors_origins,
            vapid_public_key: config
                .vapid_public_key
                .as_deref()
                .map(check_vapid_public_key)
                .transpose()
                .map_err(|e| anyhow::anyhow!("NOTIFY_VAPID_PUBLIC_KEY: {e}"))?,
            // Every message goes to a provider: SES and SNS keep their own records.
            outbox: None,
        },
    ))
}

/// A VAPID public key as browsers take it (`applicationServerKey`): base64url of an
/// uncompressed P-256 point, 65 bytes starting with 4.
fn check_vapid_public_key(key: &str) -> Result<String, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key.trim_end_matches('='))
        .map_err(|e| format!("is not base64url: {e}"))?;
    if bytes.len() != 65 || bytes[0] != 4 {
        return Err("is not an uncompressed P-256 public key (65 bytes starting with 4)".into());
    }
    Ok(key.to_owned())
}
