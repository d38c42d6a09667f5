//! The fanout Lambda: SQS fanout queue → delivery rows and dispatch jobs, and the chores
//! (the sweep, purging a deleted group's memberships).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use notify_aws::{config::AwsConfig, handlers, metrics, wiring};

// One thread: an execution environment handles one invocation at a time, and its I/O needs
// no second worker; a multi-threaded runtime starts a worker per core at every cold start.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    metrics::init("fanout");
    let config = AwsConfig::from_env()?;
    let sdk = wiring::sdk_config()?;
    let fanout = &wiring::fanout(&config, &sdk);
    let max_receives = config.fanout_max_receives;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = handlers::fanout_event(fanout, event.payload, max_receives).await;
        metrics::flush();
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}
