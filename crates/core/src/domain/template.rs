//! Stored templates and their rendering. A template that does not compile never gets stored.
//!
//! A template is code its author runs on our machine, so every render has a budget: minijinja
//! fuel (instructions), a recursion limit, and a cap on each rendered part's size, written
//! through a writer that stops at the cap. Without it, three nested `range(100000)` loops held
//! a worker for ever and `{{ "x" * 50000000 }}` rendered a 52 MB email (issue 32).

use std::io::Write;

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

/// Instructions one part's render may run: a real email's loops over its order lines use a few
/// thousand; three nested loops of 100,000 would need 10^15.
pub const FUEL: u64 = 200_000;
/// Nested includes, macros and blocks.
pub const RECURSION_LIMIT: usize = 32;

/// The most a part may render to, in bytes: a subject is one header line (RFC 5322's 998), a
/// body at most 1 MiB (well under SES's 10 MB message), an SMS its 1,600 characters of up to
/// four bytes, an inbox item its 64 KiB, a push part the 4 KiB a push service takes.
pub fn max_rendered_bytes(part: &str) -> usize {
    match part {
        "subject" => 998,
        "text" | "html" => 1024 * 1024,
        "sms" => 1600 * 4,
        "in_app.title" | "in_app.body" | "in_app.url" => 64 * 1024,
        _ => 4 * 1024,
    }
}

/// Why a part could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{part}: the template ran out of its budget ({FUEL} steps, {RECURSION_LIMIT} levels)")]
    OverBudget { part: &'static str },
    #[error("{part}: renders to more than {limit} bytes")]
    TooLarge { part: &'static str, limit: usize },
    #[error("{part}: {reason}")]
    Failed { part: &'static str, reason: String },
}

impl RenderError {
    /// Whether the template itself is at fault whatever its data: a trial render at `PUT`
    /// refuses it. Other failures may come from sample data that real data would not have.
    pub fn is_budget(&self) -> bool {
        matches!(self, Self::OverBudget { .. } | Self::TooLarge { .. })
    }
}

/// A writer that takes at most `limit` bytes and then fails.
struct Capped {
    out: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("over the size cap"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
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

    /// Renders every part present, each under the budget; a part that fails at render time
    /// (e.g. a filter given the wrong type, or out of budget) is an error for that recipient.
    pub fn render(&self, parts: &Parts, context: &serde_json::Value) -> Result<Parts, RenderError> {
        let render = |part: &'static str, present: bool| -> Result<Option<String>, RenderError> {
            if present {
                self.render_part(part, context).map(Some)
            } else {
                Ok(None)
            }
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

/// minijinja reports a too-deep template as an invalid operation with this detail.
fn is_recursion_limit(e: &minijinja::Error) -> bool {
    e.detail().is_some_and(|d| d.contains("recursion limit"))
}

impl Compiled {
    /// One part, under the budget.
    fn render_part(
        &self,
        part: &'static str,
        context: &serde_json::Value,
    ) -> Result<String, RenderError> {
        let failed = |e: &minijinja::Error| RenderError::Failed {
            part,
            reason: describe(e),
        };
        let template = self
            .env
            .get_template(template_name(part))
            .map_err(|e| failed(&e))?;
        let limit = max_rendered_bytes(part);
        let mut out = Capped {
            out: Vec::new(),
            limit,
            over: false,
        };
        match template.render_captured_to(context, &mut out) {
            Ok(_) => {}
            Err(_) if out.over => return Err(RenderError::TooLarge { part, limit }),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel || is_recursion_limit(&e) => {
                return Err(RenderError::OverBudget { part });
            }
            Err(e) => return Err(failed(&e)),
        }
        String::from_utf8(out.out).map_err(|_| RenderError::Failed {
            part,
            reason: "rendered text is not UTF-8".into(),
        })
    }

    /// Renders every part on sample data (a recipient with no profile, no template data) and
    /// answers the parts that blow the budget whatever their data: `PUT` refuses those. A part
    /// that fails on the sample data for another reason may be fine on real data.
    pub fn trial(&self, parts: &Parts) -> Vec<RenderError> {
        let sample = serde_json::json!({
            "user": {"user_id": "sample", "locale": "en", "timezone": "UTC"},
            "unsubscribe_url": "https://example.com/u/sample",
        });
        parts
            .fields()
            .into_iter()
            .filter(|(_, source)| source.is_some())
            .filter_map(|(part, _)| self.render_part(part, &sample).err())
            .filter(RenderError::is_budget)
            .collect()
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

    fn budget_error(source: &str) -> RenderError {
        let parts = Parts {
            text: Some(source.into()),
            ..Default::default()
        };
        Compiled::compile(&parts)
            .unwrap()
            .render(&parts, &json!({}))
            .unwrap_err()
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let started = std::time::Instant::now();
        let e = budget_error(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}",
        );
        assert_eq!(e, RenderError::OverBudget { part: "text" });
        assert!(e.is_budget());
        // A guard against a budget that is no budget: far under a second even in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_huge_string_stops_at_the_part_cap() {
        let e = budget_error(r#"{{ "x" * 50000000 }}"#);
        assert_eq!(
            e,
            RenderError::TooLarge {
                part: "text",
                limit: 1024 * 1024
            }
        );
        let subject = Parts {
            subject: Some(r#"{{ "s" * 999 }}"#.into()),
            ..Default::default()
        };
        let e = Compiled::compile(&subject)
            .unwrap()
            .render(&subject, &json!({}))
            .unwrap_err();
        assert_eq!(
            e,
            RenderError::TooLarge {
                part: "subject",
                limit: 998
            }
        );
    }

    #[test]
    fn deep_recursion_is_over_budget() {
        let e = budget_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        assert!(e.is_budget(), "{e:?}");
    }

    #[test]
    fn an_ordinary_template_with_a_loop_is_well_within_budget() {
        let parts = Parts {
            html: Some("<ul>{% for line in lines %}<li>{{ line.name }}: {{ line.price }}</li>{% endfor %}</ul>".into()),
            ..Default::default()
        };
        let lines: Vec<_> = (0..500)
            .map(|i| json!({"name": format!("item {i}"), "price": i}))
            .collect();
        let out = Compiled::compile(&parts)
            .unwrap()
            .render(&parts, &json!({"lines": lines}))
            .unwrap();
        assert!(out.html.unwrap().contains("item 499"));
    }

    #[test]
    fn a_render_error_that_is_not_the_templates_fault_is_not_a_budget_error() {
        let e = budget_error("{{ 1 // 0 }}");
        assert!(!e.is_budget(), "{e:?}");
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
