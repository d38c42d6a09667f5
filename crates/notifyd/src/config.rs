//! Configuration: environment variables, each overridable by a flag of the same meaning.

use notify_core::retention::Retention;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "notifyd",
    version,
    about = "The notification service on one machine"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the API listens.
    #[arg(long = "addr", env = "NOTIFY_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Embedded database and outbox.
    #[arg(
        long = "data-dir",
        env = "NOTIFY_DATA_DIR",
        default_value = "./.notify"
    )]
    pub data_dir: PathBuf,
    /// The bearer key; generated at first start and saved to $NOTIFY_DATA_DIR/api-key when unset.
    #[arg(long = "api-key", env = "NOTIFY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Signs one-click unsubscribe links; generated at first start and saved to
    /// $NOTIFY_DATA_DIR/unsubscribe-key when unset. Changing it breaks the links already sent.
    #[arg(
        long = "unsubscribe-key",
        env = "NOTIFY_UNSUBSCRIBE_KEY",
        hide_env_values = true
    )]
    pub unsubscribe_key: Option<String>,
    /// Signs user tokens; generated at first start and saved to $NOTIFY_DATA_DIR/user-token-key
    /// when unset. Changing it ends every user token (and leaves unsubscribe links working).
    #[arg(
        long = "user-token-key",
        env = "NOTIFY_USER_TOKEN_KEY",
        hide_env_values = true
    )]
    pub user_token_key: Option<String>,
    /// Where recipients reach this server: unsubscribe links start with it (default: the
    /// listen address).
    #[arg(long = "public-url", env = "NOTIFY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The product's web origins allowed to call the inbox routes from a browser, separated by
    /// commas (e.g. https://app.example.com).
    #[arg(long = "cors-origins", env = "NOTIFY_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// The VAPID key (PKCS#8 P-256, base64url) that signs Web Push requests; generated at
    /// first start and saved to $NOTIFY_DATA_DIR/vapid-key when unset. Changing it ends every
    /// browser's subscription.
    #[arg(
        long = "vapid-private-key",
        env = "NOTIFY_VAPID_PRIVATE_KEY",
        hide_env_values = true
    )]
    pub vapid_private_key: Option<String>,
    /// Who push services may contact about our pushes (`mailto:` or `https:`; default:
    /// mailto: and the From address).
    #[arg(long = "vapid-subject", env = "NOTIFY_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
    /// A Google service account's JSON key file, for push to apps through Firebase Cloud
    /// Messaging; unset: no FCM (apps' tokens fail their deliveries, saying so).
    #[arg(long = "fcm-service-account", env = "NOTIFY_FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<std::path::PathBuf>,
    /// Where the FCM HTTP v1 API is.
    #[arg(
        long = "fcm-api-url",
        env = "NOTIFY_FCM_API_URL",
        default_value = "https://fcm.googleapis.com"
    )]
    pub fcm_api_url: String,
    /// e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host:465; unset writes .eml files to the outbox.
    #[arg(long = "smtp-url", env = "NOTIFY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The From address.
    #[arg(
        long = "email-from",
        env = "NOTIFY_EMAIL_FROM",
        default_value = "notify@localhost"
    )]
    pub email_from: String,
    /// A URL that receives POST {"to", "body"}; unset appends JSON lines to the outbox.
    #[arg(long = "sms-webhook-url", env = "NOTIFY_SMS_WEBHOOK_URL")]
    pub sms_webhook_url: Option<String>,
    /// Days a send's notification and deliveries are kept after it (and an inbox item after it
    /// was read or archived); an hourly pass removes what is older.
    #[arg(long = "retention-days", env = "NOTIFY_RETENTION_DAYS", default_value_t = Retention::DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
    /// Attempts per delivery before a transient error marks it failed.
    #[arg(long = "max-attempts", env = "NOTIFY_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; it doubles per attempt (with jitter) up to 5 minutes.
    #[arg(
        long = "retry-base-ms",
        env = "NOTIFY_RETRY_BASE_MS",
        default_value_t = 2000
    )]
    pub retry_base_ms: u64,

    /// Most emails per second (unset: as fast as the SMTP server takes them; it still slows
    /// down when the server throttles).
    #[arg(long = "email-per-second", env = "NOTIFY_EMAIL_PER_SECOND", value_parser = positive_rate)]
    pub email_per_second: Option<f64>,

    /// Most SMS per second (unset: as fast as the webhook takes them).
    #[arg(long = "sms-per-second", env = "NOTIFY_SMS_PER_SECOND", value_parser = positive_rate)]
    pub sms_per_second: Option<f64>,

    /// Most requests per second per API key (unset: no limit); over it, 429 with Retry-After.
    #[arg(long = "api-key-rps", env = "NOTIFY_API_KEY_RPS", value_parser = positive_rate)]
    pub api_key_rps: Option<f64>,

    /// Seconds a connection has to send a request's head (the request line and headers);
    /// a client that sends less is disconnected.
    #[arg(
        long = "header-read-timeout-secs",
        env = "NOTIFY_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout_secs: u64,

    /// Most client connections open at once (inbox streams included); past it, new ones wait
    /// to be accepted. Keep it under the process's file limit (`ulimit -n`).
    #[arg(
        long = "max-connections",
        env = "NOTIFY_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub max_connections: usize,

    /// Lets webhook and push endpoints be loopback, private or link-local addresses (development
    /// and tests; otherwise refused, since such a URL could reach into this machine's network).
    #[arg(long = "webhook-allow-private", env = "NOTIFY_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,

    /// Seconds to wait before each retry of a failed webhook post, comma-separated; after the
    /// last, the event is dropped and the endpoint disabled.
    #[arg(
        long = "webhook-retry-pauses",
        env = "NOTIFY_WEBHOOK_RETRY_PAUSES",
        default_value = "5,300,1800,7200,18000,36000,36000",
        value_parser = pauses
    )]
    pub webhook_retry_pauses: Pauses,
}

/// Pauses between webhook attempts.
#[derive(Debug, Clone)]
pub struct Pauses(pub Vec<std::time::Duration>);

fn pauses(raw: &str) -> Result<Pauses, String> {
    raw.split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 86_400.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| format!("{s:?} is not a number of seconds (0 to 86400)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Pauses)
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Moves every dead-lettered job of both queues back to ready, and exits. Safe while
    /// notifyd runs: its workers pick the jobs up within a minute.
    Redrive,
    /// Prints the ready and dead-lettered jobs of both queues, and exits.
    Queues,
    /// Prints a new VAPID key pair as the AWS stack's two parameters (`VapidPrivateKey=...`,
    /// `VapidPublicKey=...`), for `sam deploy --parameter-overrides`, and exits.
    VapidKeygen,
}

/// The configured key, or the one saved at first start, or a new one saved now (mode 0600).
/// Returns the key and whether it was just made (then it is printed once).
pub fn api_key(config: &Config) -> std::io::Result<(String, bool)> {
    configured_or_saved(
        config.api_key.as_deref(),
        &config.data_dir.join("api-key"),
        "nk_",
    )
}

/// The key that signs user tokens: configured, or saved at first start, or new.
pub fn user_token_key(config: &Config) -> std::io::Result<String> {
    configured_or_saved(
        config.user_token_key.as_deref(),
        &config.data_dir.join("user-token-key"),
        "",
    )
    .map(|(key, _)| key)
}

/// The key that signs unsubscribe links: configured, or saved at first start, or new.
pub fn unsubscribe_key(config: &Config) -> std::io::Result<String> {
    configured_or_saved(
        config.unsubscribe_key.as_deref(),
        &config.data_dir.join("unsubscribe-key"),
        "",
    )
    .map(|(key, _)| key)
}

/// The VAPID key that identifies this server to push services (PKCS#8, base64url):
/// configured, or saved at first start, or new.
pub fn vapid_key(config: &Config) -> std::io::Result<String> {
    let path = config.data_dir.join("vapid-key");
    if let Some(key) = config
        .vapid_private_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        return Ok(key.to_owned());
    }
    if let Ok(saved) = std::fs::read_to_string(&path)
        && !saved.trim().is_empty()
    {
        return Ok(saved.trim().to_owned());
    }
    let key = notify_core::web_push::VapidKey::generate();
    write_private(&path, &key)?;
    Ok(key)
}

/// A configured secret, or the one saved at `path`, or a new one saved there now (mode 0600);
/// says whether it was just made.
fn configured_or_saved(
    configured: Option<&str>,
    path: &Path,
    prefix: &str,
) -> std::io::Result<(String, bool)> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Ok((key.to_owned(), false));
    }
    if let Ok(saved) = std::fs::read_to_string(path) {
        let saved = saved.trim().to_owned();
        if !saved.is_empty() {
            return Ok((saved, false));
        }
    }
    let key = generate_key(prefix)?;
    write_private(path, &key)?;
    Ok((key, true))
}

fn generate_key(prefix: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{raw:?} is not a positive number of sends per second"
        )),
    }
}
