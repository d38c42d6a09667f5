//! The api Lambda: the core HTTP API behind API Gateway.

use notify_aws::{config::AwsConfig, wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    wiring::init_tracing();
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config().await;
    let api_key = wiring::api_key(&sdk).await?;
    let router = notify_core::api::router(wiring::app(&config, &sdk), &api_key);
    lambda_http::run(router).await
}
