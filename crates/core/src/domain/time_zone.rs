use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An IANA time zone name known to the bundled tz database (`Asia/Seoul`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(ParseError::new("is not an IANA time zone name"));
        }
        let tz = jiff::tz::db()
            .get(raw)
            .map_err(|_| ParseError::new("is not an IANA time zone name, e.g. Asia/Seoul"))?;
        Ok(Self(tz.iana_name().unwrap_or(raw).to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<TimeZoneName> for String {
    fn from(t: TimeZoneName) -> String {
        t.0
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iana_names() {
        assert_eq!(
            TimeZoneName::parse("Asia/Seoul").unwrap().as_str(),
            "Asia/Seoul"
        );
        assert!(TimeZoneName::parse("UTC").is_ok());
        for bad in ["", "Mars/Base", "+09:00", "../../etc/passwd"] {
            assert!(
                TimeZoneName::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
