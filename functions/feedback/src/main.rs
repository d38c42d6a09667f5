//! The feedback Lambda: SES events (bounces, complaints, ...) from the feedback queue → the
//! suppression list.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use notify_aws::{config::AwsConfig, handlers, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    let store = &wiring::feedback(&config, &sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(handlers::feedback_event(store.as_ref(), event.payload).await)
    }))
    .await
}
