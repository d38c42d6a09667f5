use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An RFC 5322 addr-spec (`local@domain`), as lettre accepts it for an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.len() > 254 {
            return Err(ParseError::new("is longer than 254 characters"));
        }
        raw.parse::<lettre::Address>().map_err(|_| {
            ParseError::new(
                "is not a valid email address (RFC 5322 addr-spec, e.g. ada@example.com)",
            )
        })?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: never log a whole address.
    pub fn redacted(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or(("", &self.0));
        format!("{}***@{}", local.chars().next().unwrap_or('*'), domain)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert!(EmailAddress::parse("ada@example.com").is_ok());
        assert!(EmailAddress::parse("a.b+tag@sub.example.co.kr").is_ok());
        assert!(EmailAddress::parse("notify@localhost").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@@example.com",
            "ada @example.com",
            "<ada@example.com>",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn redacts() {
        assert_eq!(
            EmailAddress::parse("ada@example.com").unwrap().redacted(),
            "a***@example.com"
        );
    }
}
