//! The webhooks Lambda: events from the webhook queue → signed POSTs to the endpoints.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use notify_aws::{config::AwsConfig, handlers, wiring};

// One thread: an execution environment handles one invocation at a time, and its I/O needs
// no second worker; a multi-threaded runtime starts a worker per core at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    let webhooks = &wiring::webhook_consumer(&config, &sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(handlers::webhook_event(webhooks, event.payload).await)
    }))
    .await
}
