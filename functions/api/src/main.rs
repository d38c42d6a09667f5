//! The api Lambda: the core HTTP API behind API Gateway. Init makes no AWS call: the first
//! API key's secret is read when a request first needs it.

use notify_aws::{config::AwsConfig, wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wiring::init_tracing();
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config().await;
    let router = wiring::api(&config, &sdk, wiring::first_key(&sdk)?);
    lambda_http::run(router).await
}
