use serde::{Deserialize, Serialize};

use crate::domain::{Channel, EmailAddress, PhoneNumber, TimeZoneName, UserId};

/// A person who can be notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub timezone: Option<TimeZoneName>,
    pub locale: Option<String>,
    pub channels: ChannelPrefs,
}

/// Which channels the person accepts; a channel set to false is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPrefs {
    pub email: bool,
    pub sms: bool,
    #[serde(default = "on")]
    pub in_app: bool,
    #[serde(default = "on")]
    pub push: bool,
}

fn on() -> bool {
    true
}

impl Default for ChannelPrefs {
    fn default() -> Self {
        Self {
            email: true,
            sms: true,
            in_app: true,
            push: true,
        }
    }
}

impl ChannelPrefs {
    pub fn allows(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
            Channel::InApp => self.in_app,
            Channel::Push => self.push,
        }
    }
}
