//! The AWS stack of `template.yaml` on one machine, without Docker and without an AWS account:
//! the resources made in the emulator from the template itself (`stack`), each function's
//! binary run as Lambda runs it (`lambda`), and the services that move a notification from one
//! function to the next played as AWS plays them: API Gateway (`api_gateway`), the SQS event
//! source mappings (`event_source`) and EventBridge Scheduler (`scheduler`). The `aws-local`
//! binary puts them together; the tests use the same parts.

pub mod api_gateway;
pub mod emulator;
pub mod event_source;
pub mod lambda;
pub mod scheduler;
pub mod stack;
pub mod template;
