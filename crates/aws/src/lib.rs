//! Adapters that run the core on AWS, and the Lambda handlers that the three functions wire up.

pub mod config;
pub mod delivery_tags;
pub mod email;
pub mod emf;
pub mod feedback;
pub mod handlers;
pub mod https;
pub mod lazy_client;
pub mod metrics;
pub mod provider_error;
pub mod queues;
pub mod scheduler;
pub mod secret;
pub mod sms;
pub mod sms_opt_outs;
pub mod store;
pub mod wiring;
