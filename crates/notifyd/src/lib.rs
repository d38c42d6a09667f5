//! `notifyd`: the API, the scheduler, the fanout and the dispatch in one process, on SQLite.
//!
//! `build` opens the database, builds the adapters and services and binds the listener;
//! `Notifyd::run` serves until its shutdown token is cancelled, then finishes what is in flight.
//! The binary adds flags and signals; tests run it in process.

pub mod config;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use notify_core::api::ApiOptions;
use notify_core::backoff::Backoff;
use notify_core::domain::EmailAddress;
use notify_core::fcm::{FcmSender, PushProviders, ServiceAccount};
use notify_core::jobs::Chore;
use notify_core::ports::error_chain;
use notify_core::ports::{
    Clock, EmailSender, Queues, SmsSender, StaticKey, StaticSigningKey, SystemClock,
};
use notify_core::ports::{Outbox, PushSender};
use notify_core::retention::Retention;
use notify_core::services::App;
use notify_core::services::api_keys::ApiKeys;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use notify_core::services::inbox::{Inbox, LiveInbox};
use notify_core::services::preview::Preview;
use notify_core::services::unsubscribe::UnsubscribeLinks;
use notify_core::services::user_tokens::UserTokens;
use notify_core::services::webhooks::Webhooks;
use notify_core::web_push::{VapidKey, WebPushSender};
use notify_core::webhook_http::HttpPoster;
use notify_local::Db;
use notify_local::db::Durability;
use notify_local::email::{EmlOutbox, SmtpEmail};
use notify_local::outbox::OutboxReader;
use notify_local::queue::{QueueName, SqliteQueues};
use notify_local::scheduler::SqliteScheduler;
use notify_local::sms::{JsonlOutbox, WebhookSms};
use notify_local::store::SqliteStore;
use notify_local::worker::{self, WorkerSettings};

pub use config::Config;

/// A built service, listening but not yet serving.
pub struct Notifyd {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    api_key: String,
    new_key: bool,
    app: App,
    fanout: Arc<Fanout>,
    dispatch: Arc<Dispatch>,
    webhooks: Arc<Webhooks>,
    scheduler: SqliteScheduler,
    worker_db: Db,
    worker_queues: SqliteQueues,
    retry_base: std::time::Duration,
    max_attempts: u32,
    retention: Retention,
    /// The workers' connection's store, which the retention pass prunes through.
    prune_store: Arc<SqliteStore>,
    api_key_rps: Option<f64>,
    server_limits: serve::Limits,
    cors_origins: Vec<axum::http::HeaderValue>,
    vapid_public_key: String,
    outbox: Option<Arc<dyn Outbox>>,
    /// Held while running: one process per data directory.
    lock: std::fs::File,
}

/// Creates the data directory readable by this user only (0700), and makes an older one so:
/// it holds the database (webhook secrets, API key hashes), the generated keys and the outbox
/// (reset links, unsubscribe tokens).
pub fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

pub async fn build(config: &Config) -> anyhow::Result<Notifyd> {
    private_data_dir(&config.data_dir)?;
    let (api_key, new_key) = config::api_key(config).context("API key")?;
    let from = EmailAddress::parse(&config.email_from).context("NOTIFY_EMAIL_FROM")?;

    // One process per data directory: the queues' leases assume it (see `release_stale_leases`).
    let lock = std::fs::File::create(config.data_dir.join("lock")).context("lock file")?;
    lock.try_lock()
        .with_context(|| format!("another notifyd is using {}", config.data_dir.display()))?;
    // Two connections: the API's commits are synced before its 202; the workers' are not, which
    // a power cut can cost at most a repeated send (see `Durability`).
    let path = config.data_dir.join("notify.db");
    let db =
        Db::open(&path, Durability::Full).with_context(|| format!("opening {}", path.display()))?;
    let worker_db = Db::open(&path, Durability::Normal)
        .with_context(|| format!("opening {}", path.display()))?;
    let (jobs, deliveries) = db
        .release_stale_leases()
        .await
        .context("releasing stale leases")?;
    if jobs + deliveries > 0 {
        tracing::info!(
            jobs,
            deliveries,
            "released the leases of a previous run that did not stop cleanly"
        );
    }
    let store = Arc::new(SqliteStore::new(db.clone()));
    let worker_store = Arc::new(SqliteStore::new(worker_db.clone()));
    let queues = SqliteQueues::new(db.clone());
    let worker_queues = queues.on(worker_db.clone());
    let scheduler = SqliteScheduler::new(db.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let email: Arc<dyn EmailSender> = match &config.smtp_url {
        Some(url) => Arc::new(SmtpEmail::from_url(url).context("NOTIFY_SMTP_URL")?),
        None => Arc::new(
            EmlOutbox::new(config.data_dir.join("outbox/email")).context("the email outbox")?,
        ),
    };
    // The console shows what went to the outbox instead of a provider.
    let reader = OutboxReader {
        email_dir: config
            .smtp_url
            .is_none()
            .then(|| config.data_dir.join("outbox/email")),
        sms_file: config
            .sms_webhook_url
            .is_none()
            .then(|| config.data_dir.join("outbox/sms.jsonl")),
    };
    let outbox = (reader.email_dir.is_some() || reader.sms_file.is_some())
        .then(|| Arc::new(reader) as Arc<dyn Outbox>);
    let sms: Arc<dyn SmsSender> = match &config.sms_webhook_url {
        Some(url) => Arc::new(WebhookSms::new(url).context("NOTIFY_SMS_WEBHOOK_URL")?),
        None => Arc::new(
            JsonlOutbox::open(config.data_dir.join("outbox/sms.jsonl"))
                .await
                .context("the SMS outbox")?,
        ),
    };

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("listening on {}", config.addr))?;
    let addr = listener.local_addr().context("the listener's address")?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let unsubscribe_key = config::unsubscribe_key(config).context("the unsubscribe key")?;
    let unsubscribe = Arc::new(UnsubscribeLinks::new(
        Arc::new(StaticSigningKey(unsubscribe_key.into_bytes())),
        &public_url,
    ));
    // One process: the API and the workers share the endpoints it remembers, so a webhook
    // made or deleted through the API counts at once.
    let webhooks = Arc::new(
        Webhooks::new(
            worker_store.clone(),
            Arc::new(worker_queues.clone()),
            Arc::new(
                HttpPoster::new(config.webhook_allow_private).context("the webhook HTTP client")?,
            ),
            clock.clone(),
        )
        .allowing_internal(config.webhook_allow_private)
        .with_pauses(config.webhook_retry_pauses.0.clone()),
    );
    // One process: a stream opened through the API hears of what the workers deliver.
    let live_inbox = Arc::new(LiveInbox::new());
    let user_token_key = config::user_token_key(config).context("the user-token key")?;
    let user_tokens = Arc::new(UserTokens::new(
        Arc::new(StaticSigningKey(user_token_key.into_bytes())),
        clock.clone(),
    ));
    let vapid = VapidKey::from_pkcs8(&config::vapid_key(config).context("the VAPID key")?)
        .map_err(|e| anyhow::anyhow!("NOTIFY_VAPID_PRIVATE_KEY: {e}"))?;
    let vapid_public_key = vapid.public_key();
    let vapid_subject = config
        .vapid_subject
        .clone()
        .unwrap_or_else(|| format!("mailto:{}", config.email_from));
    let fcm: Option<Arc<dyn PushSender>> = match &config.fcm_service_account {
        None => None,
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("NOTIFY_FCM_SERVICE_ACCOUNT {}", path.display()))?;
            let account = ServiceAccount::parse(&json)
                .map_err(|e| anyhow::anyhow!("NOTIFY_FCM_SERVICE_ACCOUNT: {e}"))?;
            Some(Arc::new(
                FcmSender::new(account, &config.fcm_api_url)
                    .map_err(|e| anyhow::anyhow!("the FCM client: {e}"))?,
            ))
        }
    };
    let push = Arc::new(PushProviders {
        web_push: Some(Arc::new(
            WebPushSender::new(vapid, &vapid_subject, config.webhook_allow_private)
                .context("the Web Push HTTP client")?,
        )),
        fcm,
    });
    let cors_origins = notify_core::api::parse_cors_origins(&config.cors_origins)
        .map_err(|e| anyhow::anyhow!("NOTIFY_CORS_ORIGINS: {e}"))?;
    let app = App {
        preview: Arc::new(Preview::new(
            store.clone(),
            clock.clone(),
            unsubscribe.clone(),
            from.clone(),
        )),
        inbox: Arc::new(Inbox::new(store.clone(), clock.clone()).with_live(live_inbox.clone())),
        user_tokens,
        store,
        scheduler: Arc::new(scheduler.clone()),
        queues: Arc::new(queues.clone()),
        clock: clock.clone(),
        unsubscribe: unsubscribe.clone(),
        webhooks: webhooks.clone(),
    };
    let fanout = Arc::new(Fanout {
        store: worker_store.clone(),
        queues: Arc::new(worker_queues.clone()),
        clock: clock.clone(),
        settings: FanoutSettings::default(),
    });
    let worker_store_for_inbox = worker_store.clone();
    let prune_store = worker_store.clone();
    let clock_for_inbox = clock.clone();
    let dispatch = Arc::new(
        Dispatch::new(
            worker_store,
            email,
            sms,
            clock,
            DispatchSettings {
                lease: jiff::SignedDuration::from_secs(60),
                max_attempts: config.max_attempts,
                email_per_second: config.email_per_second,
                sms_per_second: config.sms_per_second,
                time_budget: std::time::Duration::from_secs(30),
                ..DispatchSettings::new(from)
            },
        )
        .with_unsubscribe(unsubscribe)
        .with_webhooks(webhooks.clone())
        .with_push(push)
        .with_inbox(Arc::new(
            Inbox::new(worker_store_for_inbox, clock_for_inbox).with_live(live_inbox),
        )),
    );

    Ok(Notifyd {
        listener,
        addr,
        api_key,
        new_key,
        app,
        fanout,
        dispatch,
        webhooks,
        scheduler,
        worker_db,
        worker_queues,
        retry_base: std::time::Duration::from_millis(config.retry_base_ms),
        max_attempts: config.max_attempts,
        retention: Retention::days(config.retention_days)
            .map_err(|e| anyhow::anyhow!("NOTIFY_RETENTION_DAYS {e}"))?,
        prune_store,
        api_key_rps: config.api_key_rps,
        server_limits: serve::Limits {
            header_read_timeout: std::time::Duration::from_secs(
                config.header_read_timeout_secs.max(1),
            ),
            max_connections: config.max_connections,
        },
        cors_origins,
        vapid_public_key,
        outbox,
        lock,
    })
}

impl Notifyd {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Whether the key was generated by this start (it is then printed once).
    pub fn new_key(&self) -> bool {
        self.new_key
    }

    /// Serves the API and runs the workers until `shutdown` is cancelled; then takes no new
    /// request and waits for the requests and jobs in flight.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let settings = WorkerSettings {
            concurrency: notify_local::email::SMTP_CONNECTIONS as usize,
            backoff: Backoff {
                base: self.retry_base,
                max: std::time::Duration::from_secs(300),
            },
            // Each receive makes at most one attempt per delivery; the margin covers receives
            // that found a delivery claimed by another worker. Past this the job is
            // dead-lettered.
            max_receives: self.max_attempts + 10,
            ..WorkerSettings::default()
        };
        let workers = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            self.scheduler
                .on(self.worker_db.clone())
                .run(self.worker_queues.clone(), workers.clone()),
        );
        tasks.spawn(worker::run(
            self.worker_queues.clone(),
            QueueName::Fanout,
            WorkerSettings {
                // A group's pages go one after the other in its own chain of jobs, whatever
                // this is; what runs at once is other sends' fanouts. A burst of single sends
                // is a fanout job each: with 2 at once, they kept dispatch and the SMTP
                // server waiting (0.48x its capacity end to end under `api_load`).
                concurrency: notify_local::email::SMTP_CONNECTIONS as usize,
                ..settings
            },
            workers.clone(),
            worker::fanout_handler(self.fanout),
        ));
        tasks.spawn(worker::run(
            self.worker_queues.clone(),
            QueueName::Dispatch,
            WorkerSettings {
                // Twice the SMTP connections: while half the jobs send, the other half write
                // their claims and outcomes, so no connection waits on the database.
                concurrency: 2 * notify_local::email::SMTP_CONNECTIONS as usize,
                ..settings
            },
            workers.clone(),
            worker::dispatch_handler(self.dispatch, settings.max_receives),
        ));
        tasks.spawn(worker::run(
            self.worker_queues.clone(),
            QueueName::Webhooks,
            settings,
            workers.clone(),
            worker::webhook_handler(self.webhooks),
        ));
        tasks.spawn(sweep_every(
            std::time::Duration::from_secs(60),
            self.worker_queues.clone(),
            workers.clone(),
        ));
        tasks.spawn(prune_every(
            PRUNE_PERIOD,
            self.prune_store.clone(),
            self.retention,
            workers.clone(),
        ));

        tracing::info!(addr = %self.addr, "notifyd listening");
        // One process: a key revoked here stops at once; the time to live only bounds what a
        // lookup remembers.
        let keys = ApiKeys::new(
            self.app.store.clone(),
            Arc::new(StaticKey(self.api_key.clone())),
            self.app.clock.clone(),
            std::time::Duration::from_secs(30),
        )
        .with_limit(self.api_key_rps);
        let live_inbox = self.app.inbox.live().cloned();
        let router = notify_core::api::router(
            self.app,
            Arc::new(keys),
            ApiOptions {
                metrics: Some(prometheus()),
                cors_origins: self.cors_origins,
                vapid_public_key: Some(self.vapid_public_key),
                outbox: self.outbox,
            },
        );
        let stop = shutdown.clone();
        serve::serve(self.listener, router, self.server_limits, async move {
            stop.cancelled().await;
            // Open inbox streams would hold the shutdown for ever.
            if let Some(live) = live_inbox {
                live.close();
            }
            tracing::info!("shutting down: no new requests; finishing what is in flight");
        })
        .await;
        workers.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!("stopped");
        drop(self.lock);
        Ok(())
    }
}

/// The process's Prometheus recorder, installed by the first service built in it (a test
/// process may build several; they share it).
fn prometheus() -> notify_core::api::MetricsText {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| tracing::warn!(error = %e, "no metrics: another recorder is installed"))
            .ok()
    });
    match handle.clone() {
        Some(handle) => Arc::new(move || handle.render()),
        None => Arc::new(String::new),
    }
}

/// The queue commands: they open the database beside a running notifyd (SQLite allows it).
pub async fn admin(config: &Config, command: &config::Command) -> anyhow::Result<()> {
    if let config::Command::VapidKeygen = command {
        let private = VapidKey::generate();
        let public = VapidKey::from_pkcs8(&private)
            .map_err(|e| anyhow::anyhow!("the new VAPID key: {e}"))?
            .public_key();
        println!("VapidPrivateKey={private}");
        println!("VapidPublicKey={public}");
        return Ok(());
    }
    let path = config.data_dir.join("notify.db");
    let db =
        Db::open(&path, Durability::Full).with_context(|| format!("opening {}", path.display()))?;
    let queues = SqliteQueues::new(db);
    for queue in [QueueName::Fanout, QueueName::Dispatch] {
        match command {
            config::Command::Redrive => {
                let moved = queues.redrive(queue).await.context("redrive")?;
                println!(
                    "{}: {moved} dead-lettered jobs moved back to ready",
                    queue.as_str()
                );
            }
            config::Command::Queues => {
                let (ready, dead) = queues.depth(queue).await.context("queue depth")?;
                println!("{}: {ready} ready, {dead} dead-lettered", queue.as_str());
            }
            config::Command::VapidKeygen => unreachable!("answered above"),
        }
    }
    Ok(())
}

/// How often the retention pass runs (its first run is at start).
const PRUNE_PERIOD: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs `chore` every `period`, the first time at once, until `shutdown`.
async fn every<F, Fut>(period: std::time::Duration, shutdown: CancellationToken, mut chore: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => chore().await,
        }
    }
}

/// Removes what is past its retention every `period`, as DynamoDB's TTL does on AWS.
async fn prune_every(
    period: std::time::Duration,
    store: Arc<SqliteStore>,
    retention: Retention,
    shutdown: CancellationToken,
) {
    every(period, shutdown, || async {
        let now = jiff::Timestamp::now();
        match store.prune(retention.cutoff(now), now, 500).await {
            Ok(pruned) if pruned.is_empty() => {}
            Ok(pruned) => tracing::info!(?pruned, "removed what is past its retention"),
            Err(e) => tracing::warn!(error = %error_chain(&e), "the retention pass failed"),
        }
    })
    .await
}

/// Puts a sweep on the fanout queue every `period`, as the recurring schedule does on AWS: a
/// reserved send whose trigger was lost is fired, a send left `sending` is finished.
async fn sweep_every(
    period: std::time::Duration,
    queues: SqliteQueues,
    shutdown: CancellationToken,
) {
    every(period, shutdown, || async {
        if let Err(e) = queues.send_chore(&Chore::Sweep).await {
            tracing::warn!(error = %error_chain(&e), "could not queue the sweep");
        }
    })
    .await
}
