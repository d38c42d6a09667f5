//! The floor of the cold-start benchmark: the smallest `lambda_runtime` function, as in the
//! runtime's own hello-world example. `cold_start` builds and measures it beside ours.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(json!({"message": format!("Hello, {}!", event.payload["name"].as_str().unwrap_or("world"))}))
    }))
    .await
}
