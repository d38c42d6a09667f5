//! The `notifyd` binary: flags and environment, logs, signals; the service is the library.

use clap::Parser;
use tokio_util::sync::CancellationToken;

use notifyd::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every file notifyd makes (database, WAL, keys, outbox) is its user's alone: 0600, and
    // 0700 for directories.
    // SAFETY: umask only swaps the process's file mode mask; no memory is involved.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    if let Some(command) = &config.command {
        notifyd::private_data_dir(&config.data_dir)?;
        return notifyd::admin(&config, command).await;
    }
    let service = notifyd::build(&config).await?;
    if service.new_key() {
        println!(
            "notifyd: generated an API key (saved to {}): {}",
            config.data_dir.join("api-key").display(),
            service.api_key()
        );
    }
    println!("notifyd: listening on http://{}", service.addr());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    service.run(shutdown).await
}

async fn wait_for_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        // Without a SIGTERM handler, Ctrl-C still stops it.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
