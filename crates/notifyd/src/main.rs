//! `notifyd`: the API, the scheduler, the fanout and the dispatch in one process, on SQLite.

mod config;

use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use notify_core::backoff::Backoff;
use notify_core::domain::EmailAddress;
use notify_core::jobs::Chore;
use notify_core::ports::{Clock, EmailSender, Queues, SmsSender, SystemClock};
use notify_core::services::App;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use notify_local::Db;
use notify_local::db::Durability;
use notify_local::email::{EmlOutbox, SmtpEmail};
use notify_local::queue::{QueueName, SqliteQueues};
use notify_local::scheduler::SqliteScheduler;
use notify_local::sms::{JsonlOutbox, WebhookSms};
use notify_local::store::SqliteStore;
use notify_local::worker::{self, WorkerSettings};

use config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Config::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notifyd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    if let Some(command) = &config.command {
        return admin(&config, command).await;
    }
    let (api_key, new_key) = config::api_key(&config).map_err(|e| format!("API key: {e}"))?;
    if new_key {
        println!(
            "notifyd: generated an API key (saved to {}): {api_key}",
            config.data_dir.join("api-key").display()
        );
    }
    let from =
        EmailAddress::parse(&config.email_from).map_err(|e| format!("NOTIFY_EMAIL_FROM {e}"))?;

    // One process per data directory: the queues' leases assume it (see `release_stale_leases`).
    let lock = std::fs::File::create(config.data_dir.join("lock"))
        .map_err(|e| format!("lock file: {e}"))?;
    lock.try_lock()
        .map_err(|_| format!("another notifyd is using {}", config.data_dir.display()))?;
    // Two connections: the API's commits are synced before its 202; the workers' are not, which
    // a power cut can cost at most a repeated send (see `Durability`).
    let path = config.data_dir.join("notify.db");
    let db = Db::open(&path, Durability::Full).map_err(|e| format!("database: {e}"))?;
    let worker_db = Db::open(&path, Durability::Normal).map_err(|e| format!("database: {e}"))?;
    let (jobs, deliveries) = db
        .release_stale_leases()
        .await
        .map_err(|e| format!("database: {e}"))?;
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
        Some(url) => Arc::new(SmtpEmail::from_url(url)?),
        None => Arc::new(
            EmlOutbox::new(config.data_dir.join("outbox/email"))
                .map_err(|e| format!("outbox: {e}"))?,
        ),
    };
    let sms: Arc<dyn SmsSender> = match &config.sms_webhook_url {
        Some(url) => Arc::new(WebhookSms::new(url)?),
        None => Arc::new(
            JsonlOutbox::open(config.data_dir.join("outbox/sms.jsonl"))
                .await
                .map_err(|e| format!("outbox: {e}"))?,
        ),
    };

    let app = App {
        store,
        scheduler: Arc::new(scheduler.clone()),
        queues: Arc::new(queues.clone()),
        clock: clock.clone(),
    };
    let fanout = Arc::new(Fanout {
        store: worker_store.clone(),
        queues: Arc::new(worker_queues.clone()),
        clock: clock.clone(),
        settings: FanoutSettings::default(),
    });
    let dispatch = Arc::new(Dispatch::new(
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
    ));

    let shutdown = CancellationToken::new();
    let settings = WorkerSettings {
        concurrency: notify_local::email::SMTP_CONNECTIONS as usize,
        backoff: Backoff {
            base: std::time::Duration::from_millis(config.retry_base_ms),
            max: std::time::Duration::from_secs(300),
        },
        // Each receive makes at most one attempt per delivery; the margin covers receives that
        // found a delivery claimed by another worker. Past this the job is dead-lettered.
        max_receives: config.max_attempts + 10,
        ..WorkerSettings::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        scheduler
            .on(worker_db.clone())
            .run(worker_queues.clone(), shutdown.clone()),
    );
    tasks.spawn(worker::run(
        worker_queues.clone(),
        QueueName::Fanout,
        WorkerSettings {
            concurrency: 2,
            ..settings
        },
        shutdown.clone(),
        worker::fanout_handler(fanout),
    ));
    tasks.spawn(worker::run(
        worker_queues.clone(),
        QueueName::Dispatch,
        settings,
        shutdown.clone(),
        worker::dispatch_handler(dispatch, settings.max_receives),
    ));

    tasks.spawn(sweep_every(
        std::time::Duration::from_secs(60),
        worker_queues.clone(),
        shutdown.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| format!("listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "notifyd listening");
    println!("notifyd: listening on http://{addr}");

    let router = notify_core::api::router(app, &api_key);
    let stop = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new requests; finishing what is in flight");
            stop.cancel();
        })
        .await
        .map_err(|e| format!("server: {e}"))?;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    drop(lock);
    Ok(())
}

/// The queue commands: they open the database beside a running notifyd (SQLite allows it).
async fn admin(config: &Config, command: &config::Command) -> Result<(), String> {
    let db = Db::open(&config.data_dir.join("notify.db"), Durability::Full)
        .map_err(|e| format!("database: {e}"))?;
    let queues = SqliteQueues::new(db);
    for queue in [QueueName::Fanout, QueueName::Dispatch] {
        match command {
            config::Command::Redrive => {
                let moved = queues.redrive(queue).await.map_err(|e| e.to_string())?;
                println!(
                    "{}: {moved} dead-lettered jobs moved back to ready",
                    queue.as_str()
                );
            }
            config::Command::Queues => {
                let (ready, dead) = queues.depth(queue).await.map_err(|e| e.to_string())?;
                println!("{}: {ready} ready, {dead} dead-lettered", queue.as_str());
            }
        }
    }
    Ok(())
}

/// Puts a sweep on the fanout queue every `period`, as the recurring schedule does on AWS: a
/// reserved send whose trigger was lost is fired, a send left `sending` is finished.
async fn sweep_every(
    period: std::time::Duration,
    queues: SqliteQueues,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = queues.send_chore(&Chore::Sweep).await {
                    tracing::warn!(error = %e, "could not queue the sweep");
                }
            }
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
