//! An address that every later send skips, before any provider call: it bounced, its owner
//! complained or opted out of SMS, or an operator suppressed it.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Channel, EmailAddress, ParseError, PhoneNumber};

/// An email address (compared without case, as mailbox providers and SES do) or an E.164 phone
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SuppressedAddress {
    Email(EmailAddress),
    Phone(PhoneNumber),
}

impl SuppressedAddress {
    /// `+` and digits: a phone number; anything else: an email address.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        // An email address may start with `+` too (`+news@example.com`); a phone number has
        // no `@`.
        if raw.starts_with('+') && !raw.contains('@') {
            return PhoneNumber::parse(raw).map(Self::Phone);
        }
        EmailAddress::parse(&raw.to_lowercase())
            .map(Self::Email)
            .map_err(|_| {
                ParseError::new(
                    "is neither an email address (ada@example.com) nor an E.164 phone number (+821012345678)",
                )
            })
    }

    /// The address of a delivery on `channel`, as suppressions are keyed; `None` when it does
    /// not parse (a delivery whose address is broken fails on its own).
    pub fn of_delivery(channel: Channel, address: &str) -> Option<Self> {
        match channel {
            Channel::Email => EmailAddress::parse(&address.to_lowercase())
                .ok()
                .map(Self::Email),
            Channel::Sms => PhoneNumber::parse(address).ok().map(Self::Phone),
            // An inbox or a browser has no address a provider could reject.
            Channel::InApp | Channel::Push => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Email(a) => a.as_str(),
            Self::Phone(p) => p.as_str(),
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Self::Email(_) => Channel::Email,
            Self::Phone(_) => Channel::Sms,
        }
    }
}

impl TryFrom<String> for SuppressedAddress {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<SuppressedAddress> for String {
    fn from(a: SuppressedAddress) -> String {
        a.as_str().to_owned()
    }
}

impl fmt::Display for SuppressedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A permanent bounce: the mailbox does not exist.
    Bounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// An operator, or the product, suppressed it.
    Manual,
    /// The phone's owner answered STOP.
    SmsOptOut,
}

impl SuppressionReason {
    pub const ALL: [Self; 4] = [Self::Bounce, Self::Complaint, Self::Manual, Self::SmsOptOut];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Manual => "manual",
            Self::SmsOptOut => "sms_opt_out",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub address: SuppressedAddress,
    pub reason: SuppressionReason,
    pub created_at: Timestamp,
}

impl Suppression {
    /// What a skipped delivery's `error` says.
    pub fn skip_reason(&self) -> String {
        format!("suppressed: {}", self.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_by_kind_and_emails_lose_their_case() {
        let email = SuppressedAddress::parse("Ada@Example.COM").unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
        assert_eq!(email.channel(), Channel::Email);
        let phone = SuppressedAddress::parse("+821012345678").unwrap();
        assert_eq!(phone.channel(), Channel::Sms);
        assert!(SuppressedAddress::parse("+12").is_err());
        assert!(SuppressedAddress::parse("nobody").is_err());
        // An email address that starts with `+` is an email address.
        let plus = SuppressedAddress::parse("+wt9f#j@qr0.io").unwrap();
        assert_eq!(plus.channel(), Channel::Email);
        assert_eq!(
            SuppressedAddress::of_delivery(Channel::Email, "ADA@example.com"),
            Some(email)
        );
    }

    #[test]
    fn reasons_round_trip() {
        for r in SuppressionReason::ALL {
            assert_eq!(SuppressionReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(SuppressionReason::parse("angry"), None);
    }
}
