//! `aws-local up`: the stack of `template.yaml` on this machine (see the crate's docs), the API
//! on a local port as API Gateway would serve it, until Ctrl-C or SIGTERM. `aws-local sent`:
//! the emails and SMS the emulator's SES and SNS took.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use notify_aws_local::emulator::{self, FaultProxy, Moto};
use notify_aws_local::event_source::SqsMapping;
use notify_aws_local::lambda::Function;
use notify_aws_local::scheduler::Scheduler;
use notify_aws_local::stack::{Stack, StackOptions};
use notify_aws_local::template::Template;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "The AWS stack of template.yaml on this machine, without Docker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the emulator, make the stack, run the functions and serve the API.
    Up(Up),
    /// Print the emails and SMS that SES and SNS took.
    Sent {
        /// The emulator's URL (default: the one `up` wrote to its state directory).
        #[arg(long)]
        moto: Option<String>,
        #[arg(long, default_value = ".aws-local")]
        state_dir: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Parser)]
struct Up {
    /// Where the API listens (API Gateway's place).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// moto's port (0: any free one).
    #[arg(long, default_value_t = 0)]
    moto_port: u16,
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Where the functions' binaries are (`cargo build -p api -p fanout -p dispatch`).
    #[arg(long, default_value = "target/debug")]
    functions_dir: PathBuf,
    /// The Python of the venv that has moto.
    #[arg(long, env = "NOTIFY_TEST_PYTHON", default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Where the API URL, the API key and moto's URL are written.
    #[arg(long, default_value = ".aws-local")]
    state_dir: PathBuf,
    /// A template parameter, `Name=Value` (repeatable). SenderAddress defaults to
    /// notify@example.com, whose domain is verified in the emulator's SES.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// A variable set on every function over the template's, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    environment: Vec<String>,
    /// Most execution environments per queue-driven function (the template's
    /// MaximumConcurrency, capped by this on one machine).
    #[arg(long, default_value_t = 2)]
    max_concurrency: u32,
    /// Execution environments of the API's function.
    #[arg(long, default_value_t = 4)]
    api_concurrency: usize,
    /// Write each function's log lines to `<DIR>/<logical id>.log` (its EMF metrics included)
    /// instead of standard error.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Fault rates for the proxy put between the functions and the emulator, as JSON (e.g.
    /// '{"dynamodb.throttle": 0.1}'; see crates/aws-local/aws_fault_proxy.py). None: no proxy.
    #[arg(long)]
    faults: Option<String>,
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| anyhow!("{text:?} is not NAME=VALUE"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AWS_LOCAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up(up) => run(up).await,
        Command::Sent {
            moto,
            state_dir,
            json,
        } => sent(moto, &state_dir, json).await,
    }
}

async fn run(up: Up) -> anyhow::Result<()> {
    let template = Template::load(&up.template)?;
    if let Some(dir) = &up.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut parameters: HashMap<String, String> = up
        .parameters
        .iter()
        .map(|p| pair(p))
        .collect::<Result<_, _>>()?;
    parameters
        .entry("SenderAddress".into())
        .or_insert_with(|| "notify@example.com".into());
    let environment = up
        .environment
        .iter()
        .map(|p| pair(p))
        .collect::<Result<_, _>>()?;
    let listener = tokio::net::TcpListener::bind(&up.addr)
        .await
        .with_context(|| format!("listen on {}", up.addr))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    // Unsubscribe links in emails point at this listener, as the template's parameter says.
    parameters
        .entry("PublicUrl".into())
        .or_insert_with(|| api_url.clone());

    let moto = Moto::start(&up.python, up.moto_port).await?;
    let direct = emulator::sdk_config(&moto.endpoint);
    let stack = Stack::create(
        &direct,
        &template,
        &StackOptions {
            name: "notify-local".into(),
            parameters,
            environment,
            ..StackOptions::default()
        },
    )
    .await
    .context("make the stack in the emulator")?;
    let proxy = match &up.faults {
        Some(rates) => {
            let rates: Value = serde_json::from_str(rates).context("--faults is not JSON")?;
            let proxy = FaultProxy::start(&up.python, &moto.endpoint, &rates).await?;
            // The proxy takes any name; a misspelt fault would silently never happen.
            let known: Value = reqwest::get(format!("{}/_faults", proxy.endpoint))
                .await?
                .json()
                .await?;
            for name in rates.as_object().into_iter().flatten().map(|(k, _)| k) {
                if known["rates"].get(name).is_none() {
                    anyhow::bail!(
                        "--faults: no fault {name}; the proxy knows {:?}",
                        known["rates"]
                            .as_object()
                            .map(|r| r.keys().collect::<Vec<_>>())
                    );
                }
            }
            Some(proxy)
        }
        None => None,
    };
    let functions_endpoint = proxy.as_ref().map_or(&moto.endpoint, |p| &p.endpoint);

    let mut tasks = Vec::new();
    let mut functions = Vec::new();
    let mut api = None;
    for spec in &stack.functions {
        let concurrency = if spec.http_api {
            up.api_concurrency
        } else {
            spec.sqs_sources
                .iter()
                .map(|s| s.maximum_concurrency.unwrap_or(up.max_concurrency))
                .max()
                .unwrap_or(1)
                .min(up.max_concurrency) as usize
        };
        let function = Function::new(
            &stack.name,
            spec.clone(),
            &up.functions_dir,
            functions_endpoint,
            concurrency,
            up.log_dir.as_deref(),
        )?;
        for source in &spec.sqs_sources {
            let queue_url = stack
                .queue_urls
                .get(&source.queue_arn)
                .ok_or_else(|| anyhow!("{}: no queue {}", spec.logical_id, source.queue_arn))?;
            let mapping = Arc::new(SqsMapping {
                // The mapping's own calls go where the function's do: with faults, AWS's
                // receives fail and repeat too.
                sqs: aws_sdk_sqs::Client::new(&emulator::sdk_config(functions_endpoint)),
                queue_url: queue_url.clone(),
                queue_arn: source.queue_arn.clone(),
                batch_size: source.batch_size as i32,
                batching_window: source.batching_window,
                report_batch_item_failures: source.report_batch_item_failures,
                function: function.clone(),
            });
            for _ in 0..concurrency {
                tasks.push(tokio::spawn(mapping.clone().run()));
            }
        }
        if spec.http_api {
            api = Some(function.clone());
        }
        functions.push(function);
    }
    let api = api.ok_or_else(|| anyhow!("the template has no function with HttpApi events"))?;
    let mut scheduler = Scheduler::new(
        &direct,
        stack.schedule_groups.clone(),
        stack.queue_urls.clone(),
    );
    tasks.push(tokio::spawn(async move {
        loop {
            for fire in scheduler.fire_due().await {
                tracing::info!(schedule = %fire.name, named = ?fire.named, "schedule fired");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }));
    let router = notify_aws_local::api_gateway::router(api);
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    }));

    let key = stack
        .secrets
        .get("ApiKeySecret")
        .cloned()
        .unwrap_or_default();
    std::fs::create_dir_all(&up.state_dir)?;
    let key_file = up.state_dir.join("api-key");
    std::fs::write(&key_file, &key)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    }
    let state = json!({
        "api": api_url,
        "moto": moto.endpoint,
        "moto_pid": moto.pid(),
        "proxy": proxy.as_ref().map(|p| &p.endpoint),
        "stack": stack.name,
        // Each queue's URL by logical id, for `cargo lambda invoke` and the AWS CLI.
        "queues": stack
            .refs
            .iter()
            .filter(|(_, url)| stack.queue_urls.values().any(|u| u == *url))
            .collect::<HashMap<_, _>>(),
    });
    std::fs::write(up.state_dir.join("state.json"), format!("{state:#}\n"))?;
    for (id, kind) in &stack.not_emulated {
        tracing::info!(resource = %id, kind = %kind, "not emulated");
    }
    println!("API={api_url}");
    println!("KEY={key}");
    println!("# the key is also in {}", key_file.display());
    println!(
        "# the emulator: {} (sent mail and SMS: aws-local sent)",
        moto.endpoint
    );
    println!("aws-local: ready");

    shutdown_signal().await;
    tracing::info!("stopping");
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    for function in &functions {
        function.shutdown().await;
    }
    drop(proxy);
    drop(moto);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// moto lists an address once per header that names it.
fn destinations(email: &Value) -> String {
    let mut all: Vec<&str> = email["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    all.sort();
    all.dedup();
    all.join(", ")
}

async fn sent(
    moto: Option<String>,
    state_dir: &std::path::Path,
    as_json: bool,
) -> anyhow::Result<()> {
    let endpoint = match moto {
        Some(m) => m,
        None => {
            let path = state_dir.join("state.json");
            let state: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| {
                    format!("read {} (is aws-local up running?)", path.display())
                })?)?;
            state["moto"].as_str().unwrap_or_default().to_owned()
        }
    };
    let data = emulator::sent(&endpoint).await?;
    let emails = emulator::raw_emails(&data);
    let sms = emulator::sms(&data);
    if as_json {
        println!("{}", json!({ "emails": emails, "sms": sms }));
        return Ok(());
    }
    for email in &emails {
        println!(
            "=== email {} from {} to {}",
            email["id"].as_str().unwrap_or_default(),
            email["source"].as_str().unwrap_or_default(),
            destinations(email)
        );
        println!(
            "{}",
            email["raw_data"]
                .as_str()
                .unwrap_or_default()
                .replace("\r\n", "\n")
        );
    }
    for message in &sms {
        println!(
            "=== sms to {}: {}",
            message["phone_number"].as_str().unwrap_or_default(),
            message["message"].as_str().unwrap_or_default()
        );
    }
    println!("{} emails, {} SMS", emails.len(), sms.len());
    Ok(())
}
