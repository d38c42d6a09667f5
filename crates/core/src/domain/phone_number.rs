use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An E.164 number: `+`, a country code that does not start with 0, at most 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let digits = raw
            .strip_prefix('+')
            .ok_or_else(|| ParseError::new("must be in E.164 form, e.g. +821012345678"))?;
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return Err(ParseError::new("must be in E.164 form, e.g. +821012345678"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: the country code region and the last two digits only.
    pub fn redacted(&self) -> String {
        let n = self.0.len();
        format!(
            "{}***{}",
            &self.0[..3.min(n)],
            &self.0[n.saturating_sub(2)..]
        )
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_e164() {
        assert!(PhoneNumber::parse("+821012345678").is_ok());
        assert!(PhoneNumber::parse("+14155550123").is_ok());
        for bad in [
            "",
            "821012345678",
            "+0123456789",
            "+1234",
            "+1234567890123456",
            "+1 415 555 0123",
            "+1415555012a",
            "+",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
