//! Rendering one delivery's message: the notification's content, or its template compiled once,
//! made into what a provider is given. Dispatch renders with it before each send, and the
//! console's preview shows the same thing without sending it.

use jiff::Timestamp;

use crate::domain::category::Category;
use crate::domain::delivery::{DeliveryKey, Recipient};
use crate::domain::inbox::{ActionUrl, NewInboxItem};
use crate::domain::notification::{Content, Notification};
use crate::domain::push::PushMessage;
use crate::domain::template::{Compiled, Parts};
use crate::domain::{CategoryId, Channel, EmailAddress};
use crate::ports::{OutgoingEmail, OutgoingSms, SendError, Store, StoreError};

use super::message;

/// The longest SMS sent: SNS splits a message into at most 10 parts of 160 characters (GSM-7).
pub const MAX_SMS_CHARS: usize = 1600;
/// The longest in-app body kept, rendered.
pub const MAX_IN_APP_BYTES: usize = 64 * 1024;

/// What a notification's messages are rendered from, compiled once.
pub enum Source {
    Inline(Parts),
    Template {
        parts: Parts,
        compiled: Box<Compiled>,
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Its template was deleted or no longer compiles: every delivery fails with this reason.
    Broken(String),
}

impl Source {
    pub async fn load(store: &dyn Store, n: &Notification) -> Result<Self, StoreError> {
        Ok(match &n.content {
            Content::Inline(parts) => Source::Inline(parts.clone()),
            Content::Template { id, data } => match store.get_template(id).await? {
                None => Source::Broken(format!("template {id:?} was deleted before the send")),
                Some(t) => match Compiled::compile(&t.parts) {
                    Ok(compiled) => Source::Template {
                        parts: t.parts,
                        compiled: Box::new(compiled),
                        data: data.clone(),
                    },
                    Err(errors) => {
                        Source::Broken(format!("template {id:?} does not compile: {errors:?}"))
                    }
                },
            },
        })
    }

    /// The template's data, kept with an in-app item.
    fn data(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            Source::Template { data, .. } => data.clone(),
            _ => serde_json::Map::new(),
        }
    }

    fn parts_for(&self, recipient: &Recipient, unsubscribe: Option<&str>) -> Result<Parts, String> {
        match self {
            Source::Inline(parts) => Ok(parts.clone()),
            Source::Template {
                parts,
                compiled,
                data,
            } => {
                let mut context = data.clone();
                context.insert("user".into(), recipient.template_context());
                if let Some(url) = unsubscribe {
                    context.insert("unsubscribe_url".into(), url.into());
                }
                compiled
                    .render(parts, &serde_json::Value::Object(context))
                    .map_err(|e| e.to_string())
            }
            Source::Broken(why) => Err(why.clone()),
        }
    }
}

/// The notification's category if users can leave it (not a transactional one): its emails
/// carry an unsubscribe link, and users who left it are skipped.
pub async fn optional_category(
    store: &dyn Store,
    n: &Notification,
) -> Result<Option<CategoryId>, StoreError> {
    let Some(id) = &n.category else {
        return Ok(None);
    };
    let category = store
        .get_category(id)
        .await?
        .unwrap_or_else(|| Category::ordinary(id.clone()));
    Ok((!category.transactional).then_some(category.id))
}

/// One delivery's message, as its provider (or the inbox) is given it.
#[derive(Debug, Clone)]
pub enum Rendered {
    Email(OutgoingEmail),
    Sms(OutgoingSms),
    InApp(NewInboxItem),
    Push(PushMessage),
}

/// What one delivery renders from, besides its recipient.
pub struct RenderInput<'a> {
    pub notification: &'a Notification,
    pub source: &'a Source,
    pub from: &'a EmailAddress,
    /// The email's one-click unsubscribe link, if its category can be left.
    pub unsubscribe: Option<&'a str>,
    pub now: Timestamp,
}

impl RenderInput<'_> {
    /// Renders the delivery `key` to `recipient`; an error is why it cannot be sent (never
    /// worth retrying).
    pub fn render(&self, recipient: &Recipient, key: &DeliveryKey) -> Result<Rendered, SendError> {
        let parts = self
            .source
            .parts_for(recipient, self.unsubscribe)
            .map_err(SendError::permanent)?;
        match key.channel {
            Channel::Email => {
                let to = recipient
                    .email
                    .as_ref()
                    .ok_or_else(|| SendError::permanent("no email address"))?;
                message::build_email(self.from, to, key, &parts, self.unsubscribe)
                    .map(Rendered::Email)
                    .map_err(SendError::permanent)
            }
            Channel::Sms => {
                let to = recipient
                    .phone
                    .clone()
                    .ok_or_else(|| SendError::permanent("no phone number"))?;
                let body = parts
                    .sms
                    .ok_or_else(|| SendError::permanent("no sms text"))?;
                // The template's source is capped, but its data can make the text longer.
                let length = body.chars().count();
                if length > MAX_SMS_CHARS {
                    return Err(SendError::permanent(format!(
                        "the rendered SMS has {length} characters; at most {MAX_SMS_CHARS} can be sent"
                    )));
                }
                Ok(Rendered::Sms(OutgoingSms {
                    to,
                    body,
                    message_id: message::message_id(key, "sms"),
                }))
            }
            Channel::InApp => self.inbox_item(recipient, parts).map(Rendered::InApp),
            Channel::Push => {
                recipient
                    .user_id
                    .as_ref()
                    .ok_or_else(|| SendError::permanent("the recipient is not a user"))?;
                let title = parts
                    .push_title
                    .ok_or_else(|| SendError::permanent("no push title"))?;
                Ok(Rendered::Push(PushMessage {
                    notification_id: self.notification.id.clone(),
                    title,
                    body: parts.push_body.filter(|b| !b.is_empty()),
                    url: action_url(parts.push_url, "push.url")?.map(|u| u.as_str().to_owned()),
                }))
            }
        }
    }

    fn inbox_item(&self, recipient: &Recipient, parts: Parts) -> Result<NewInboxItem, SendError> {
        let n = self.notification;
        let user_id = recipient
            .user_id
            .clone()
            .ok_or_else(|| SendError::permanent("the recipient is not a user"))?;
        let body = parts
            .in_app_body
            .ok_or_else(|| SendError::permanent("no in_app body"))?;
        if body.len() > MAX_IN_APP_BYTES {
            return Err(SendError::permanent(format!(
                "the rendered in_app body has {} bytes; at most {MAX_IN_APP_BYTES} are kept",
                body.len()
            )));
        }
        Ok(NewInboxItem {
            user_id,
            notification_id: n.id.clone(),
            category: n.category.clone(),
            title: parts.in_app_title.filter(|t| !t.is_empty()),
            body,
            url: action_url(parts.in_app_url, "in_app.url")?,
            data: self.source.data(),
            created_at: self.now,
        })
    }
}

/// A rendered link: empty is none; otherwise http(s) or a path of the site, as at the API.
fn action_url(url: Option<String>, field: &str) -> Result<Option<ActionUrl>, SendError> {
    url.filter(|u| !u.is_empty())
        .map(|u| ActionUrl::parse(&u))
        .transpose()
        .map_err(|why| SendError::permanent(format!("the rendered {field} {why}")))
}
