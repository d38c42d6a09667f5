use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::delivery::DeliveryStatus;
use super::template::Parts;
use crate::domain::{
    CategoryId, Channel, EmailAddress, GroupId, NotificationId, PhoneNumber, TemplateId, UserId,
};

/// Who a notification is for. A group is resolved to its members when the send fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    UserId(UserId),
    GroupId(GroupId),
    Email(EmailAddress),
    Phone(PhoneNumber),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Inline(Parts),
    Template {
        id: TemplateId,
        data: serde_json::Map<String, serde_json::Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scheduled,
    Queued,
    Sending,
    Completed,
    PartiallyFailed,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Scheduled,
        Status::Queued,
        Status::Sending,
        Status::Completed,
        Status::PartiallyFailed,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Completed => "completed",
            Self::PartiallyFailed => "partially_failed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The status a finished send ends in, from its delivery counts.
    pub fn finished(counts: &Counts) -> Self {
        if counts.failed == 0 {
            Self::Completed
        } else if counts.left() == 0 {
            Self::Failed
        } else {
            Self::PartiallyFailed
        }
    }
}

/// Delivery counts: one delivery per recipient and channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub recipients: u64,
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Sent, and since reported by the provider: delivered, bounced or complained about. A
    /// delivery is counted once, under its latest status, so `sent` counts those not reported.
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub bounced: u64,
    #[serde(default)]
    pub complained: u64,
}

impl Counts {
    /// Adds `n` deliveries of `status`.
    pub fn add(&mut self, status: DeliveryStatus, n: u64) {
        match status {
            DeliveryStatus::Pending => self.pending += n,
            DeliveryStatus::Sent => self.sent += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Skipped => self.skipped += n,
            DeliveryStatus::Delivered => self.delivered += n,
            DeliveryStatus::Bounced => self.bounced += n,
            DeliveryStatus::Complained => self.complained += n,
        }
    }

    /// Deliveries whose message left: sent, delivered, bounced or complained about.
    pub fn left(&self) -> u64 {
        self.sent + self.delivered + self.bounced + self.complained
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    pub to: Target,
    pub channels: Vec<Channel>,
    pub content: Content,
    pub send_at: Timestamp,
    pub created_at: Timestamp,
    pub status: Status,
    /// What kind of message this is, for users' preferences and unsubscribe links; a group
    /// send's is its group's id unless the request names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<CategoryId>,
}
