//! The api Lambda: the core HTTP API behind API Gateway. Init makes no AWS call: the first
//! API key's secret is read when a request first needs it.

use notify_aws::{config::AwsConfig, metrics, wiring};

// One thread: an execution environment handles one invocation at a time, and its I/O needs
// no second worker; a multi-threaded runtime starts a worker per core at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    wiring::init_tracing();
    metrics::init("api");
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    // The metrics of each request go to the log as it ends.
    let router = wiring::api_from_env(&config, &sdk)?.layer(axum::middleware::map_response(
        |response: axum::response::Response| async move {
            metrics::flush();
            response
        },
    ));
    lambda_http::run(router).await
}
