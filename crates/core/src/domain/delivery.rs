use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::user::User;
use crate::domain::{Channel, EmailAddress, NotificationId, PhoneNumber, TimeZoneName, UserId};

/// A recipient as resolved when the send fired: the profile is a snapshot carried in the
/// dispatch job, so dispatch needs no read per recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// Stable key of the recipient within a notification: the user id, or the raw address.
    pub key: String,
    pub user_id: Option<UserId>,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub timezone: Option<TimeZoneName>,
    pub locale: Option<String>,
}

impl Recipient {
    pub fn from_user(user: &User) -> Self {
        Self {
            key: user.id.as_str().to_owned(),
            user_id: Some(user.id.clone()),
            email: user.email.clone(),
            phone: user.phone.clone(),
            timezone: user.timezone.clone(),
            locale: user.locale.clone(),
        }
    }

    pub fn email(address: EmailAddress) -> Self {
        Self {
            key: format!("email:{address}"),
            user_id: None,
            email: Some(address),
            phone: None,
            timezone: None,
            locale: None,
        }
    }

    pub fn phone(number: PhoneNumber) -> Self {
        Self {
            key: format!("phone:{number}"),
            user_id: None,
            email: None,
            phone: Some(number),
            timezone: None,
            locale: None,
        }
    }

    pub fn address(&self, channel: Channel) -> Option<String> {
        match channel {
            Channel::Email => self.email.as_ref().map(|a| a.as_str().to_owned()),
            Channel::Sms => self.phone.as_ref().map(|p| p.as_str().to_owned()),
            Channel::InApp | Channel::Push => self.user_id.as_ref().map(|u| u.as_str().to_owned()),
        }
    }

    /// The `user` variable that templates see.
    pub fn template_context(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.user_id,
            "email": self.email,
            "phone": self.phone,
            "timezone": self.timezone,
            "locale": self.locale,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
    Skipped,
    /// The provider reported the message delivered to the recipient's server (SES `Delivery`).
    Delivered,
    /// The recipient's server refused it for good (SES permanent `Bounce`).
    Bounced,
    /// The recipient marked it as spam (SES `Complaint`).
    Complained,
}

impl DeliveryStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Sent,
        Self::Failed,
        Self::Skipped,
        Self::Delivered,
        Self::Bounced,
        Self::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the message left for the recipient: sent, and whatever the provider said since.
    pub fn was_sent(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Delivered | Self::Bounced | Self::Complained
        )
    }

    /// Whether a provider's later report may take a delivery from `self` to `to`. Reports come
    /// in any order and more than once: a delivery is reported delivered and then complained
    /// about, never the other way round, and a bounce or a complaint is final.
    pub fn may_become(self, to: Self) -> bool {
        matches!(
            (self, to),
            (
                Self::Sent,
                Self::Delivered | Self::Bounced | Self::Complained
            ) | (Self::Delivered, Self::Bounced | Self::Complained)
        )
    }
}

/// Identifies one delivery: (notification, recipient, channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeliveryKey {
    pub notification_id: NotificationId,
    pub recipient: String,
    pub channel: Channel,
}

/// One row per recipient and channel; `error` says why when `failed` or `skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub key: DeliveryKey,
    pub user_id: Option<UserId>,
    pub address: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub sent_at: Option<Timestamp>,
    pub provider_message_id: Option<String>,
}

impl Delivery {
    pub fn pending(
        notification_id: &NotificationId,
        recipient: &Recipient,
        channel: Channel,
    ) -> Self {
        Self::new(
            notification_id,
            recipient,
            channel,
            DeliveryStatus::Pending,
            None,
        )
    }

    pub fn skipped(
        notification_id: &NotificationId,
        recipient: &Recipient,
        channel: Channel,
        why: &str,
    ) -> Self {
        Self::new(
            notification_id,
            recipient,
            channel,
            DeliveryStatus::Skipped,
            Some(why.to_owned()),
        )
    }

    fn new(
        notification_id: &NotificationId,
        recipient: &Recipient,
        channel: Channel,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Self {
        Self {
            key: DeliveryKey {
                notification_id: notification_id.clone(),
                recipient: recipient.key.clone(),
                channel,
            },
            user_id: recipient.user_id.clone(),
            address: recipient.address(channel),
            status,
            attempts: 0,
            error,
            sent_at: None,
            provider_message_id: None,
        }
    }
}

/// What a claim on a delivery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This worker now owns the delivery until the lease ends; `attempt` counts from 1.
    Claimed { attempt: u32 },
    /// Sent, failed or skipped already: nothing to do.
    Done,
    /// Another worker holds an unexpired lease.
    Busy,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        provider_message_id: String,
        at: Timestamp,
    },
    Failed {
        error: String,
    },
    /// Not sent, and never will be: the address is suppressed (`reason` says why).
    Skipped {
        reason: String,
    },
    /// A transient error: the delivery stays pending, the lease is released.
    Retry {
        error: String,
    },
    /// The channel is paused (`SendErrorKind::Paused`): as `Retry`, and the attempt the claim
    /// counted is given back, since nothing was wrong with this delivery.
    Deferred {
        error: String,
    },
}
