//! The api Lambda: the core HTTP API behind API Gateway. Init makes no AWS call: the first
//! API key's secret is read when a request first needs it.

use notify_aws::{config::AwsConfig, metrics, wiring};
use notify_core::api::ClientAddr;

// One thread: an execution environment handles one invocation at a time, and its I/O needs
// no second worker; a multi-threaded runtime starts a worker per core at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    wiring::init_tracing();
    metrics::init("api");
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    // The metrics of each request go to the log as it ends; each request knows its client's
    // address, API Gateway's source IP (the per-address limits of `/u/`).
    let router = wiring::api_from_env(&config, &sdk)?
        .layer(axum::middleware::map_response(
            |response: axum::response::Response| async move {
                metrics::flush();
                response
            },
        ))
        .layer(axum::middleware::map_request(
            |mut request: axum::extract::Request| async move {
                if let Some(ip) = source_ip(&request) {
                    request.extensions_mut().insert(ClientAddr(ip));
                }
                request
            },
        ));
    lambda_http::run(router).await
}

/// The client's address as API Gateway saw it.
fn source_ip(request: &axum::extract::Request) -> Option<std::net::IpAddr> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    ip.parse().ok()
}
