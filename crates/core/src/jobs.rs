//! Messages on the queues. Both runtimes carry them as JSON.

use serde::{Deserialize, Serialize};

use crate::domain::delivery::Recipient;
use crate::domain::webhook::WebhookEvent;
use crate::domain::{Channel, GroupId, NotificationId, WebhookId};

/// Put on the fanout queue by the API (send now) or by a fired schedule. `cursor` is set when a
/// fanout continues a large group where the previous invocation stopped. `retry_failed` asks
/// the fanout to go through the recorded deliveries instead, and send the failed ones again.
/// `segment` is set on the jobs a group send is split into, one per segment of the group's
/// memberships (see `GroupStore::member_segments`), which run at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutJob {
    pub notification_id: NotificationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_failed: bool,
}

impl FanoutJob {
    /// The first fanout of a notification.
    pub fn start(notification_id: NotificationId) -> Self {
        Self {
            notification_id,
            segment: None,
            cursor: None,
            retry_failed: false,
        }
    }
}

/// One of the `of` disjoint parts of a group's memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u32,
    pub of: u32,
}

/// Many recipients in one queue message, to keep queue calls per recipient low.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchJob {
    pub notification_id: NotificationId,
    /// The job's key within its notification (`<page key>#<n>`), on the jobs of a group's
    /// pages: a store that claims jobs whole (`DeliveryStore::job_claims`) claims such a job
    /// once, not delivery by delivery. The same key always holds the same deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub items: Vec<DispatchItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchItem {
    pub recipient: Recipient,
    pub channels: Vec<Channel>,
}

/// Events for one webhook endpoint, on the webhook queue. `attempt` counts the posts so far;
/// a job that must wait longer than a queue holds a message back waits in hops, until
/// `not_before`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub webhook_id: WebhookId,
    pub events: Vec<WebhookEvent>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<jiff::Timestamp>,
}

/// What the fanout queue carries: a notification's fanout, or a chore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FanoutMessage {
    Job(FanoutJob),
    Chore { chore: Chore },
}

/// Housekeeping that runs on the fanout queue, so that it needs no function of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chore {
    /// Moves sends that should have moved: a reserved send still `scheduled` well after its
    /// `send_at` (its trigger was lost) is fired; a `sending` one with nothing left pending is
    /// finished. Put on the queue every few minutes (a recurring schedule on AWS, a timer locally).
    Sweep,
    /// Removes the memberships of a deleted group, a page at a time.
    PurgeGroup { group_id: GroupId },
}
