//! The core of the notification service: domain types, ports, the services that move a
//! notification (accept → fanout → dispatch) and the HTTP API. No AWS and no SQLite in here.

pub mod api;
pub mod backoff;
#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod domain;
pub mod fcm;
pub mod jobs;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod ports;
pub mod retention;
pub mod services;
pub mod web_push;
pub mod webhook_http;
