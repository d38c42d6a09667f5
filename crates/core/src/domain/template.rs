//! Stored templates and their rendering. A template that does not compile never gets stored.

use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, TemplateId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    #[serde(flatten)]
    pub parts: Parts,
}

/// The parts of a message: a template's sources, or a notification's inline content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub sms: Option<String>,
    /// The in-app part (`in_app` in the API): an inbox item's title, body and action URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app_url: Option<String>,
    /// The push part (`push` in the API): what the browser's notification shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
}

impl Parts {
    /// Each part by the name the API gives it.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 10] {
        [
            ("subject", self.subject.as_deref()),
            ("text", self.text.as_deref()),
            ("html", self.html.as_deref()),
            ("sms", self.sms.as_deref()),
            ("in_app.title", self.in_app_title.as_deref()),
            ("in_app.body", self.in_app_body.as_deref()),
            ("in_app.url", self.in_app_url.as_deref()),
            ("push.title", self.push_title.as_deref()),
            ("push.body", self.push_body.as_deref()),
            ("push.url", self.push_url.as_deref()),
        ]
    }

    /// What a channel needs that these parts lack, if anything.
    pub fn missing_for(&self, channel: Channel) -> Option<&'static str> {
        match channel {
            Channel::Email => self.missing_for_email(),
            Channel::Sms => self.missing_for_sms(),
            Channel::InApp => self.in_app_body.is_none().then_some("in_app.body"),
            Channel::Push => self.push_title.is_none().then_some("push.title"),
        }
    }

    /// Email needs a subject and a body; SMS needs its own short text.
    fn missing_for_email(&self) -> Option<&'static str> {
        if self.subject.is_none() {
            Some("subject")
        } else if self.text.is_none() && self.html.is_none() {
            Some("text")
        } else {
            None
        }
    }

    fn missing_for_sms(&self) -> Option<&'static str> {
        self.sms.is_none().then_some("sms")
    }
}

/// Compiled sources, built once per dispatch job and rendered once per recipient.
pub struct Compiled {
    env: Environment<'static>,
}

/// `html` autoescapes (its name ends in .html); the other parts are plain text.
fn template_name(part: &str) -> &'static str {
    match part {
        "subject" => "subject.txt",
        "text" => "text.txt",
        "html" => "body.html",
        "sms" => "sms.txt",
        "in_app.title" => "in_app_title.txt",
        "in_app.body" => "in_app_body.txt",
        "in_app.url" => "in_app_url.txt",
        "push.title" => "push_title.txt",
        "push.body" => "push_body.txt",
        _ => "push_url.txt",
    }
}

impl Compiled {
    /// Every part that fails to compile, with minijinja's reason.
    pub fn compile(parts: &Parts) -> Result<Self, Vec<(&'static str, String)>> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        let mut errors = Vec::new();
        for (part, source) in parts.fields() {
            if let Some(source) = source
                && let Err(e) = env.add_template_owned(template_name(part), source.to_owned())
            {
                errors.push((part, describe(&e)));
            }
        }
        if errors.is_empty() {
            Ok(Self { env })
        } else {
            Err(errors)
        }
    }

    /// Renders every part present; a part that fails at render time (e.g. a filter given the
    /// wrong type) is an error for that recipient only.
    pub fn render(&self, parts: &Parts, context: &serde_json::Value) -> Result<Parts, String> {
        let render = |part: &str, present: bool| -> Result<Option<String>, String> {
            if !present {
                return Ok(None);
            }
            let template = self
                .env
                .get_template(template_name(part))
                .map_err(|e| describe(&e))?;
            template
                .render(context)
                .map(Some)
                .map_err(|e| format!("{part}: {}", describe(&e)))
        };
        Ok(Parts {
            subject: render("subject", parts.subject.is_some())?
                .map(|s| s.replace(['\r', '\n'], " ")),
            text: render("text", parts.text.is_some())?,
            html: render("html", parts.html.is_some())?,
            sms: render("sms", parts.sms.is_some())?,
            in_app_title: render("in_app.title", parts.in_app_title.is_some())?
                .map(|s| s.replace(['\r', '\n'], " ")),
            in_app_body: render("in_app.body", parts.in_app_body.is_some())?,
            in_app_url: render("in_app.url", parts.in_app_url.is_some())?
                .map(|s| s.trim().to_owned()),
            push_title: render("push.title", parts.push_title.is_some())?
                .map(|s| s.replace(['\r', '\n'], " ")),
            push_body: render("push.body", parts.push_body.is_some())?,
            push_url: render("push.url", parts.push_url.is_some())?.map(|s| s.trim().to_owned()),
        })
    }
}

fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{} (line {line}): {detail}", e.kind()),
        (Some(detail), None) => format!("{}: {detail}", e.kind()),
        _ => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compile_errors_name_each_part() {
        let parts = Parts {
            subject: Some("Hi {{ name".into()),
            text: Some("ok".into()),
            html: Some("{% if %}".into()),
            sms: None,
            ..Default::default()
        };
        let errors = Compiled::compile(&parts).err().unwrap();
        let names: Vec<_> = errors.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, ["subject", "html"]);
    }

    #[test]
    fn renders_with_data_and_escapes_html_only() {
        let parts = Parts {
            subject: Some("Hi {{ name }}".into()),
            text: Some("Hello {{ name }}, {{ user.locale }}".into()),
            html: Some("<p>{{ name }}</p>".into()),
            sms: Some("{{ name }}!".into()),
            ..Default::default()
        };
        let compiled = Compiled::compile(&parts).unwrap();
        let out = compiled
            .render(
                &parts,
                &json!({"name": "<Ada>", "user": {"locale": "ko-KR"}}),
            )
            .unwrap();
        assert_eq!(out.subject.unwrap(), "Hi <Ada>");
        assert_eq!(out.text.unwrap(), "Hello <Ada>, ko-KR");
        assert_eq!(out.html.unwrap(), "<p>&lt;Ada&gt;</p>");
        assert_eq!(out.sms.unwrap(), "<Ada>!");
    }

    #[test]
    fn subject_cannot_inject_headers() {
        let parts = Parts {
            subject: Some("{{ s }}".into()),
            ..Default::default()
        };
        let out = Compiled::compile(&parts)
            .unwrap()
            .render(&parts, &json!({"s": "a\r\nBcc: x@y.z"}))
            .unwrap();
        assert_eq!(out.subject.unwrap(), "a  Bcc: x@y.z");
    }
}
