//! The dispatch Lambda: SQS dispatch queue → SES v2 email and SNS SMS, one claim per delivery.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use notify_aws::{config::AwsConfig, handlers, metrics, wiring};

// One thread: an execution environment handles one invocation at a time, and its I/O needs
// no second worker; a multi-threaded runtime starts a worker per core at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    metrics::init("dispatch");
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    let dispatch = &wiring::dispatch(&config, &sdk)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = handlers::deadline_from_epoch_millis(event.context.deadline);
        let response = handlers::dispatch_event(dispatch, event.payload, deadline).await;
        metrics::flush();
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}
