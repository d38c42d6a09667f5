//! Configuration from the environment variables that `template.yaml` sets.

use anyhow::{Context, bail};
use notify_core::retention::Retention;

#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The DynamoDB table (single-table design, see `store.rs`).
    pub table: String,
    pub fanout_queue_url: String,
    pub dispatch_queue_url: String,
    /// Where webhook events wait to be posted.
    pub webhook_queue_url: String,
    /// The schedules' target.
    pub fanout_queue_arn: String,
    pub schedule_group: String,
    /// The role EventBridge Scheduler assumes to send to the fanout queue.
    pub scheduler_role_arn: String,
    /// Where Scheduler puts a fire it could not deliver.
    pub scheduler_dlq_arn: Option<String>,
    pub email_from: String,
    pub ses_configuration_set: Option<String>,
    /// Attempts per delivery before a transient error becomes `failed`.
    pub max_attempts: u32,
    /// Recipients per dispatch message.
    pub recipients_per_job: usize,
    /// Group members the fanout reads per page.
    pub fanout_page_size: usize,
    /// Seconds one fanout invocation works before it continues in a new one (below its timeout).
    pub fanout_time_budget_secs: u64,
    /// Seconds one dispatch message works before it leaves the rest for its next receive.
    pub dispatch_time_budget_secs: u64,
    /// Most emails and SMS per second from one dispatch execution environment. The account-wide
    /// rate is this times the dispatch event source's `MaximumConcurrency`.
    pub email_per_second: Option<f64>,
    pub sms_per_second: Option<f64>,
    /// First delay (seconds) before a retried dispatch message comes back; doubles per receive.
    pub retry_base_secs: u64,
    /// The dispatch queue's `maxReceiveCount`: on that receive, pending deliveries are marked
    /// failed before the message goes to the dead-letter queue.
    pub dispatch_max_receives: u32,
    /// The fanout queue's `maxReceiveCount`: on that receive a failing job is put back for
    /// later instead of going to the dead-letter queue.
    pub fanout_max_receives: u32,
    /// A reserved send due within this many seconds (at most SQS's 900) waits on the fanout
    /// queue with `DelaySeconds` instead of getting a schedule.
    pub queue_delay_max_secs: u64,
    /// Milliseconds one send and the write of its outcome may take: no send starts with less
    /// than this left before the dispatch invocation's deadline.
    pub dispatch_send_reserve_ms: u64,
    /// Seconds a dispatch claim keeps other workers off a delivery: longer than the dispatch
    /// function's timeout, since no invocation outlives it.
    pub dispatch_lease_secs: u64,
    /// Seconds a channel rests after SES or SNS stopped it (sending paused, access denied,
    /// daily quota), and a job of that channel waits before it comes back (at most 900).
    pub channel_pause_secs: u64,
    /// Seconds a warm api function trusts what it found about a key: a key revoked elsewhere
    /// stops working here within this time.
    pub api_key_cache_secs: u64,
    /// Seconds a warm function trusts the list of webhook endpoints it read: an endpoint
    /// added or deleted elsewhere is seen here within this time.
    pub webhook_cache_secs: u64,
    /// Most requests per second per API key in this execution environment.
    pub api_key_rps: Option<f64>,
    /// Whether webhook endpoints may be internal addresses (tests; never in a deployment).
    pub webhook_allow_private: bool,
    /// Where the API is reached from outside: unsubscribe links start with it.
    pub public_url: String,
    /// The secret that signs unsubscribe links (`NOTIFY_UNSUBSCRIBE_KEY` instead, for local
    /// runs).
    pub unsubscribe_key_secret_arn: Option<String>,
    /// The secret that signs user tokens, apart from the unsubscribe key so that each can be
    /// rotated alone (`NOTIFY_USER_TOKEN_KEY` instead, for local runs).
    pub user_token_key_secret_arn: Option<String>,
    /// The product's web origins allowed to call the inbox routes (`NOTIFY_CORS_ORIGINS`).
    pub cors_origins: String,
    /// The secret holding the VAPID key (PKCS#8 P-256, base64url) of Web Push, read by
    /// dispatch at its first push; unset: no push channel.
    pub vapid_key_secret_arn: Option<String>,
    /// The VAPID public key (base64url), which the api serves and dispatch checks its key by.
    pub vapid_public_key: Option<String>,
    /// Who push services may contact (`mailto:` or `https:`).
    pub vapid_subject: String,
    /// The secret holding a Google service account's JSON key file (FCM); unset: no FCM.
    pub fcm_service_account_secret_arn: Option<String>,
    /// Where the FCM HTTP v1 API is.
    pub fcm_api_url: String,
    /// How long a send's items are kept after their last change (the table's TTL).
    pub retention: Retention,
}

/// The variables, read through `lookup`; an empty value counts as unset.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn number<T>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.optional(name)
            .map(|v| {
                v.parse()
                    .with_context(|| format!("{name}={v:?} is not a number"))
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    }

    /// A positive rate, or nothing when unset or 0.
    fn rate(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let value: f64 = self.number(name, 0.0)?;
        if !value.is_finite() || value < 0.0 {
            bail!("{name} must be a positive number of sends per second");
        }
        Ok((value > 0.0).then_some(value))
    }

    fn var(&self, name: &str) -> anyhow::Result<String> {
        self.optional(name)
            .with_context(|| format!("{name} is not set"))
    }

    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }
}

impl AwsConfig {
    /// Reads what every function needs; a function that does not use a value still gets it
    /// from the template, so one reader serves all three.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// The same from other variables than the process's (the template's, in the tests).
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let v = Vars(lookup);
        let email_from_for_subject = v.var("NOTIFY_EMAIL_FROM")?;
        Ok(Self {
            table: v.var("NOTIFY_TABLE")?,
            fanout_queue_url: v.var("NOTIFY_FANOUT_QUEUE_URL")?,
            dispatch_queue_url: v.var("NOTIFY_DISPATCH_QUEUE_URL")?,
            webhook_queue_url: v.var("NOTIFY_WEBHOOK_QUEUE_URL")?,
            fanout_queue_arn: v.var("NOTIFY_FANOUT_QUEUE_ARN")?,
            schedule_group: v.var("NOTIFY_SCHEDULE_GROUP")?,
            scheduler_role_arn: v.var("NOTIFY_SCHEDULER_ROLE_ARN")?,
            scheduler_dlq_arn: v.optional("NOTIFY_SCHEDULER_DLQ_ARN"),
            email_from: v.var("NOTIFY_EMAIL_FROM")?,
            ses_configuration_set: v.optional("NOTIFY_SES_CONFIGURATION_SET"),
            max_attempts: v.number("NOTIFY_MAX_ATTEMPTS", 5)?,
            recipients_per_job: v.number("NOTIFY_RECIPIENTS_PER_JOB", 100)?,
            fanout_page_size: v.number("NOTIFY_FANOUT_PAGE_SIZE", 2000)?,
            fanout_time_budget_secs: v.number("NOTIFY_FANOUT_TIME_BUDGET_SECS", 40)?,
            dispatch_time_budget_secs: v.number("NOTIFY_DISPATCH_TIME_BUDGET_SECS", 20)?,
            email_per_second: v.rate("NOTIFY_EMAIL_PER_SECOND")?,
            sms_per_second: v.rate("NOTIFY_SMS_PER_SECOND")?,
            retry_base_secs: v.number("NOTIFY_RETRY_BASE_SECS", 5)?,
            dispatch_max_receives: v.number("NOTIFY_DISPATCH_MAX_RECEIVES", 10)?,
            fanout_max_receives: v.number("NOTIFY_FANOUT_MAX_RECEIVES", 5)?,
            queue_delay_max_secs: v.number("NOTIFY_QUEUE_DELAY_MAX_SECS", 900u64)?.min(900),
            dispatch_send_reserve_ms: v.number("NOTIFY_DISPATCH_SEND_RESERVE_MS", 5000)?,
            dispatch_lease_secs: v.number("NOTIFY_DISPATCH_LEASE_SECS", 40)?,
            channel_pause_secs: v.number("NOTIFY_CHANNEL_PAUSE_SECS", 300)?,
            api_key_cache_secs: v.number("NOTIFY_API_KEY_CACHE_SECS", 30)?,
            webhook_cache_secs: v.number("NOTIFY_WEBHOOK_CACHE_SECS", 30)?,
            api_key_rps: v.rate("NOTIFY_API_KEY_RPS")?,
            webhook_allow_private: v.optional("NOTIFY_WEBHOOK_ALLOW_PRIVATE").as_deref()
                == Some("true"),
            public_url: v.var("NOTIFY_PUBLIC_URL")?,
            unsubscribe_key_secret_arn: v.optional("NOTIFY_UNSUBSCRIBE_KEY_SECRET_ARN"),
            user_token_key_secret_arn: v.optional("NOTIFY_USER_TOKEN_KEY_SECRET_ARN"),
            cors_origins: v.optional("NOTIFY_CORS_ORIGINS").unwrap_or_default(),
            vapid_key_secret_arn: v.optional("NOTIFY_VAPID_KEY_SECRET_ARN"),
            vapid_public_key: v.optional("NOTIFY_VAPID_PUBLIC_KEY"),
            fcm_service_account_secret_arn: v.optional("NOTIFY_FCM_SERVICE_ACCOUNT_SECRET_ARN"),
            fcm_api_url: v
                .optional("NOTIFY_FCM_API_URL")
                .unwrap_or_else(|| "https://fcm.googleapis.com".to_owned()),
            retention: Retention::days(v.number("NOTIFY_RETENTION_DAYS", Retention::DEFAULT_DAYS)?)
                .map_err(|e| anyhow::anyhow!("NOTIFY_RETENTION_DAYS {e}"))?,
            vapid_subject: v
                .optional("NOTIFY_VAPID_SUBJECT")
                .unwrap_or_else(|| format!("mailto:{}", email_from_for_subject)),
        })
    }
}
