//! The local runtime, one test binary: the real `notifyd` binary, a real SMTP server (aiosmtpd
//! on loopback) and a real HTTP webhook receiver.

mod api_keys;
mod budgets;
mod console;
mod crash;
mod faults;
mod groups;
mod hostile;
mod inbox;
mod metrics;
mod push;
mod schedule;
mod send;
mod spec;
mod suppressions;
mod unsubscribe;
mod webhooks;
