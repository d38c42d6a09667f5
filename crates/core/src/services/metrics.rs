//! What the service counts, through the `metrics` facade: the binary installs the recorder
//! (Prometheus text for `notifyd`'s `/metrics`, CloudWatch Embedded Metric Format lines in the
//! Lambdas' logs), and the names are the same on both.

use std::time::Duration;

use crate::domain::Channel;

pub const ACCEPTED: &str = "notify_notifications_accepted_total";
pub const DELIVERIES: &str = "notify_deliveries_total";
pub const PROVIDER_LATENCY: &str = "notify_provider_latency_seconds";
pub const FANOUT_RECIPIENTS: &str = "notify_fanout_recipients_total";
pub const FANOUT_PAGES: &str = "notify_fanout_pages_total";
pub const DISPATCH_DURATION: &str = "notify_dispatch_duration_seconds";
pub const SCHEDULE_LATENESS: &str = "notify_schedule_lateness_seconds";

/// A notification accepted, sent now or reserved for later.
pub fn accepted(reserved: bool) {
    let when = if reserved { "reserved" } else { "now" };
    metrics::counter!(ACCEPTED, "when" => when).increment(1);
}

/// A delivery's outcome: `sent`, `failed`, `skipped`, `retry`, `deferred`, or `throttled` (a
/// provider asked to slow down; the send is tried again).
pub fn delivery(channel: Channel, outcome: &'static str) {
    metrics::counter!(DELIVERIES, "channel" => channel.as_str(), "outcome" => outcome).increment(1);
}

pub fn provider_latency(channel: Channel, took: Duration) {
    metrics::histogram!(PROVIDER_LATENCY, "channel" => channel.as_str()).record(took.as_secs_f64());
}

/// A fanned-out page and its recipients.
pub fn fanout_page(recipients: usize) {
    metrics::counter!(FANOUT_PAGES).increment(1);
    metrics::counter!(FANOUT_RECIPIENTS).increment(recipients as u64);
}

pub fn dispatch_duration(took: Duration) {
    metrics::histogram!(DISPATCH_DURATION).record(took.as_secs_f64());
}

/// How late a reserved send started, fire time minus `send_at` (never negative: a send is held
/// back until `send_at`).
pub fn schedule_lateness(seconds: f64) {
    metrics::histogram!(SCHEDULE_LATENESS).record(seconds.max(0.0));
}
