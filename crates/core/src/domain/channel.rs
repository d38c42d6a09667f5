use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    /// The recipient's inbox in the product's own front end (a user only).
    InApp,
    /// The user's browsers that subscribed to Web Push (a user only).
    Push,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::InApp, Channel::Push];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "email" => Ok(Self::Email),
            "sms" => Ok(Self::Sms),
            "in_app" => Ok(Self::InApp),
            "push" => Ok(Self::Push),
            _ => Err(ParseError::new(
                "must be \"email\", \"sms\", \"in_app\" or \"push\"",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::InApp => "in_app",
            Self::Push => "push",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
