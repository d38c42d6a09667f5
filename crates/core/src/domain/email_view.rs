//! An email as a person reads it: parsed from its MIME bytes once, for the console (a
//! delivery's preview, the local outbox).

use mail_parser::{MessageParser, PartType};
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmailView {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Every header of the message, in order, unfolded, as sent (encoded words not decoded).
    pub headers: Vec<EmailHeader>,
    /// The HTML part, if there is one: never rendered except in a sandbox (it is the sender's
    /// markup, and the sender may be anyone who can send).
    pub html: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmailHeader {
    pub name: String,
    pub value: String,
}

impl EmailView {
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let message = MessageParser::default()
            .parse(raw)
            .ok_or_else(|| "not a MIME message".to_owned())?;
        let address = |a: Option<&mail_parser::Address>| {
            a.and_then(|a| a.first()).and_then(|a| {
                let email = a.address.as_deref()?;
                Some(match a.name.as_deref() {
                    Some(name) if !name.is_empty() => format!("{name} <{email}>"),
                    _ => email.to_owned(),
                })
            })
        };
        let html = message.html_part(0).and_then(|p| match &p.body {
            PartType::Html(html) => Some(html.to_string()),
            _ => None,
        });
        let text = message.text_part(0).and_then(|p| match &p.body {
            PartType::Text(text) => Some(text.to_string()),
            _ => None,
        });
        Ok(Self {
            from: address(message.from()),
            to: address(message.to()),
            subject: message.subject().map(str::to_owned),
            message_id: message.message_id().map(|id| format!("<{id}>")),
            headers: message
                .headers_raw()
                .map(|(name, value)| EmailHeader {
                    name: name.to_owned(),
                    value: unfold(value),
                })
                .collect(),
            html,
            text,
        })
    }
}

impl EmailView {
    /// Any bytes as an email: parsed, or else shown whole as its text.
    pub fn parse_or_text(raw: &[u8]) -> Self {
        Self::parse(raw).unwrap_or_else(|_| Self {
            text: Some(String::from_utf8_lossy(raw).into_owned()),
            ..Self::default()
        })
    }
}

/// A header's value on one line (RFC 5322 folding undone).
fn unfold(value: &str) -> String {
    value
        .split("\r\n")
        .flat_map(|line| line.split('\n'))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_email_shows_both_parts_and_its_headers() {
        let raw = b"From: Shop <shop@example.com>\r\nTo: ada@example.com\r\nSubject: =?utf-8?b?SMOpbGxv?=\r\nMessage-ID: <a.b@example.com>\r\nList-Unsubscribe: <https://x.example/u/t>\r\n\tfolded\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Ada\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hi <b>Ada</b></p>\r\n--b--\r\n";
        let view = EmailView::parse(raw).unwrap();
        assert_eq!(view.from.as_deref(), Some("Shop <shop@example.com>"));
        assert_eq!(view.to.as_deref(), Some("ada@example.com"));
        assert_eq!(view.subject.as_deref(), Some("Héllo"));
        assert_eq!(view.message_id.as_deref(), Some("<a.b@example.com>"));
        assert_eq!(view.text.as_deref().map(str::trim), Some("Hi Ada"));
        assert_eq!(
            view.html.as_deref().map(str::trim),
            Some("<p>Hi <b>Ada</b></p>")
        );
        let unsubscribe = view
            .headers
            .iter()
            .find(|h| h.name == "List-Unsubscribe")
            .unwrap();
        assert_eq!(unsubscribe.value, "<https://x.example/u/t> folded");
    }

    #[test]
    fn a_text_only_email_has_no_html_made_up_for_it() {
        let raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\n\r\njust text\r\n";
        let view = EmailView::parse(raw).unwrap();
        assert_eq!(view.html, None);
        assert_eq!(view.text.as_deref().map(str::trim), Some("just text"));
    }
}
