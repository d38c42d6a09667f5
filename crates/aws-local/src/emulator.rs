//! The AWS emulator (moto in server mode, `moto_server.py` beside this crate for its one change)
//! and, optionally, the fault proxy in front of it (`aws_fault_proxy.py`), each a child process on
//! loopback that dies with its handle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_types::SdkConfig;
use serde_json::Value;

/// The directory of the Python scripts of this crate.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A port nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16, what: &str, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before listening on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{what} did not listen on port {port} within 30 s")
}

/// A child process killed (and reaped) when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Moto {
    child: Owned,
    pub endpoint: String,
}

impl Moto {
    /// moto on `port` (0: a free one), run by `python` (the venv's, which has moto).
    pub async fn start(python: &Path, port: u16) -> anyhow::Result<Self> {
        let port = if port == 0 { free_port()? } else { port };
        let script = scripts_dir().join("moto_server.py");
        let child = Command::new(python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} with {} (./scripts/test or ./scripts/aws-local sets up .venv)",
                    script.display(),
                    python.display()
                )
            })?;
        let mut child = Owned(child);
        wait_for_port(port, "moto", &mut child.0).await?;
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// What moto recorded: `ses.RawMessage`, `sns.SMS`, ...
    pub async fn sent(&self) -> anyhow::Result<Value> {
        sent(&self.endpoint).await
    }
}

/// What the moto at `endpoint` recorded as sent.
pub async fn sent(endpoint: &str) -> anyhow::Result<Value> {
    let url = format!("{endpoint}/moto-api/data.json");
    Ok(reqwest::get(&url)
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await?)
}

/// The emails in what moto recorded (`sent`): each `{"source", "destinations", "raw_data", "id"}`.
pub fn raw_emails(sent: &Value) -> Vec<Value> {
    sent["ses"]["RawMessage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The SMS in what moto recorded: each `{"phone_number", "message", "message_id"}`.
pub fn sms(sent: &Value) -> Vec<Value> {
    sent["sns"]["SMS"].as_array().cloned().unwrap_or_default()
}

/// The fault proxy (`aws_fault_proxy.py`) in front of an endpoint.
pub struct FaultProxy {
    child: Owned,
    pub endpoint: String,
}

impl FaultProxy {
    pub async fn start(python: &Path, upstream: &str, rates: &Value) -> anyhow::Result<Self> {
        let port = free_port()?;
        let script = scripts_dir().join("aws_fault_proxy.py");
        let child = Command::new(python)
            .arg(&script)
            .args([port.to_string(), upstream.to_owned(), rates.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", script.display()))?;
        let mut child = Owned(child);
        wait_for_port(port, "the fault proxy", &mut child.0).await?;
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// The functions' SDK configuration (`notify_aws::wiring`), with moto's fixed credentials, in
/// `us-east-1`, pointed at `endpoint`.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    notify_aws::wiring::sdk_config_with(
        REGION.into(),
        aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"),
        Some(endpoint.into()),
        notify_aws::https::https_client(false),
    )
}

pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";
