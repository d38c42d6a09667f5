use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::groups::PageView;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use super::templates::parse_parts;
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::email_view::EmailView;
use crate::domain::notification::{Content, Counts, Notification, Status, Target};
use crate::domain::{
    CategoryId, Channel, EmailAddress, GroupId, IdempotencyKey, NotificationId, PhoneNumber,
    SendAt, TemplateId, UserId,
};
use crate::services::accept::{IdempotentRequest, NewNotification};
use crate::services::render::Rendered;

/// Where a notification goes, as the API shows it: `{"user_id": ...}`, `{"email": ...}`, ...
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum TargetView<'a> {
    UserId(&'a UserId),
    GroupId(&'a GroupId),
    Email(&'a EmailAddress),
    Phone(&'a PhoneNumber),
}

impl<'a> From<&'a Target> for TargetView<'a> {
    fn from(to: &'a Target) -> Self {
        match to {
            Target::UserId(id) => Self::UserId(id),
            Target::GroupId(id) => Self::GroupId(id),
            Target::Email(a) => Self::Email(a),
            Target::Phone(p) => Self::Phone(p),
        }
    }
}

/// A notification as the API shows it; `counts` on a single one, not in lists.
#[derive(Serialize)]
struct NotificationView<'a> {
    id: &'a NotificationId,
    status: Status,
    to: TargetView<'a>,
    channels: &'a [Channel],
    send_at: jiff::Timestamp,
    created_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_id: Option<&'a TemplateId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a CategoryId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<Counts>,
}

impl<'a> NotificationView<'a> {
    fn new(n: &'a Notification, counts: Option<Counts>) -> Self {
        Self {
            id: &n.id,
            status: n.status,
            to: TargetView::from(&n.to),
            channels: &n.channels,
            send_at: n.send_at,
            created_at: n.created_at,
            template_id: match &n.content {
                Content::Template { id, .. } => Some(id),
                _ => None,
            },
            category: n.category.as_ref(),
            counts,
        }
    }
}

/// A delivery as the API shows it.
#[derive(Serialize)]
struct DeliveryView<'a> {
    /// The delivery's recipient within the notification: a user id, `email:…` or `phone:…`
    /// (what the message route takes).
    recipient: &'a str,
    user_id: Option<&'a UserId>,
    channel: Channel,
    address: Option<&'a str>,
    status: DeliveryStatus,
    attempts: u32,
    error: Option<&'a str>,
    sent_at: Option<jiff::Timestamp>,
    provider_message_id: Option<&'a str>,
}

impl<'a> From<&'a Delivery> for DeliveryView<'a> {
    fn from(d: &'a Delivery) -> Self {
        Self {
            recipient: &d.key.recipient,
            user_id: d.user_id.as_ref(),
            channel: d.key.channel,
            address: d.address.as_deref(),
            status: d.status,
            attempts: d.attempts,
            error: d.error.as_deref(),
            sent_at: d.sent_at,
            provider_message_id: d.provider_message_id.as_deref(),
        }
    }
}

/// Everything that can be checked without storage, with every bad field named.
fn parse_new(body: &Value, now: jiff::Timestamp) -> Result<NewNotification, ApiError> {
    let mut errors = Errors::default();
    let Some(map) = input::object(
        body,
        "",
        &[
            "to", "channels", "content", "template", "send_at", "category",
        ],
        &mut errors,
    ) else {
        return Err(errors.finish().unwrap_err());
    };

    let to = match map.get("to") {
        None | Some(Value::Null) => {
            errors.add("to", "is required: one of user_id, group_id, email, phone");
            None
        }
        Some(value) => parse_target(value, &mut errors),
    };

    let channels = match map.get("channels") {
        None | Some(Value::Null) => vec![Channel::Email],
        Some(Value::Array(items)) => {
            let mut channels = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(Channel::parse) {
                    Some(Ok(c)) if channels.contains(&c) => {
                        errors.add(format!("channels[{i}]"), "is listed twice")
                    }
                    Some(Ok(c)) => channels.push(c),
                    Some(Err(e)) => errors.add(format!("channels[{i}]"), e.0),
                    None => errors.add(format!("channels[{i}]"), "must be a string"),
                }
            }
            if items.is_empty() {
                errors.add("channels", "must name at least one channel");
            }
            channels
        }
        Some(_) => {
            errors.add("channels", "must be an array such as [\"email\", \"sms\"]");
            vec![]
        }
    };

    let content = match (
        map.get("content").filter(|v| !v.is_null()),
        map.get("template").filter(|v| !v.is_null()),
    ) {
        (Some(_), Some(_)) => {
            errors.add("content", "give either content or template, not both");
            None
        }
        (None, None) => {
            errors.add("content", "is required (or give template)");
            None
        }
        (Some(value), None) => {
            input::object(value, "content", super::templates::PART_KEYS, &mut errors).map(|m| {
                let parts = parse_parts(m, "content", &mut errors);
                for channel in &channels {
                    let field = parts
                        .missing_for(*channel)
                        .map(|part| format!("content.{part}"));
                    if let Some(field) = field.filter(|f| !errors.has(f)) {
                        errors.add(field, format!("is required for the {channel} channel"));
                    }
                }
                Content::Inline(parts)
            })
        }
        (None, Some(value)) => input::object(value, "template", &["id", "data"], &mut errors)
            .and_then(|m| {
                let id = input::parsed(m, "template", "id", &mut errors, TemplateId::parse);
                if !m.contains_key("id") {
                    errors.add("template.id", "is required");
                }
                let data = match m.get("data") {
                    None | Some(Value::Null) => Some(serde_json::Map::new()),
                    Some(Value::Object(d)) => Some(d.clone()),
                    Some(_) => {
                        errors.add("template.data", "must be an object");
                        None
                    }
                };
                Some(Content::Template {
                    id: id?,
                    data: data?,
                })
            }),
    };

    let send_at = input::parsed(map, "", "send_at", &mut errors, |raw| {
        SendAt::parse(raw, now)
    });
    let category = input::parsed(map, "", "category", &mut errors, CategoryId::parse);

    if let Some(to) = &to {
        let unreachable = match to {
            Target::Email(_) if channels.contains(&Channel::Sms) => {
                Some("an email address cannot receive sms")
            }
            Target::Phone(_) if channels.contains(&Channel::Email) => {
                Some("a phone number cannot receive email")
            }
            Target::Email(_) | Target::Phone(_) if channels.contains(&Channel::InApp) => {
                Some("only a user (to.user_id or a group's members) has an in_app inbox")
            }
            Target::Email(_) | Target::Phone(_) if channels.contains(&Channel::Push) => {
                Some("only a user (to.user_id or a group's members) has push subscriptions")
            }
            _ => None,
        };
        if let Some(why) = unreachable {
            errors.add("channels", why);
        }
    }
    errors.finish()?;
    match (to, content) {
        (Some(to), Some(content)) => Ok(NewNotification {
            to,
            channels,
            content,
            send_at: send_at.unwrap_or(SendAt::Now),
            category,
        }),
        _ => Err(ApiError::invalid("body", "is incomplete")),
    }
}

fn parse_target(value: &Value, errors: &mut Errors) -> Option<Target> {
    let map = input::object(
        value,
        "to",
        &["user_id", "group_id", "email", "phone"],
        errors,
    )?;
    let given: Vec<&str> = ["user_id", "group_id", "email", "phone"]
        .into_iter()
        .filter(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 {
        errors.add(
            "to",
            "must have exactly one of user_id, group_id, email, phone",
        );
        return None;
    }
    match given[0] {
        "user_id" => input::parsed(map, "to", "user_id", errors, UserId::parse).map(Target::UserId),
        "group_id" => {
            input::parsed(map, "to", "group_id", errors, GroupId::parse).map(Target::GroupId)
        }
        "email" => {
            input::parsed(map, "to", "email", errors, EmailAddress::parse).map(Target::Email)
        }
        _ => input::parsed(map, "to", "phone", errors, PhoneNumber::parse).map(Target::Phone),
    }
}

fn location(id: &NotificationId) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/notifications/{id}")).expect("ids are ASCII")
}

pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(raw) => {
            let key = raw
                .to_str()
                .map_err(|_| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "may contain only visible ASCII characters",
                    )
                })
                .and_then(|s| {
                    IdempotencyKey::parse(s).map_err(|e| ApiError::invalid("Idempotency-Key", e.0))
                })?;
            Some(IdempotentRequest::new(key, &body))
        }
    };
    let request = parse_new(&body, state.app.clock.now())?;
    let accepted = state.app.accept(request, idem).await?;
    let mut response = (StatusCode::ACCEPTED, Json(accepted.body)).into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, location(&accepted.id));
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    let n = state
        .app
        .store
        .get_notification(&id)
        .await?
        .ok_or(ApiError::not_found("notification"))?;
    let counts = state.app.store.counts(&id).await?;
    Ok(Json(NotificationView::new(&n, Some(counts))).into_response())
}

pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let page = input::page_query(&query, &mut errors);
    let status = match query.get("status") {
        None => None,
        Some(raw) => {
            let parsed = Status::parse(raw);
            if parsed.is_none() {
                errors.add("status", "must be one of scheduled, queued, sending, completed, partially_failed, failed, cancelled");
            }
            parsed
        }
    };
    errors.finish()?;
    let result = state
        .app
        .store
        .list_notifications(status, page.limit, page.cursor.as_deref())
        .await?;
    Ok(Json(PageView::of(&result, |n| NotificationView::new(n, None))).into_response())
}

pub async fn deliveries(
    State(state): State<ApiState>,
    PathId(id): PathId<NotificationId>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let page = input::page_query(&query, &mut errors);
    let status = query.get("status").and_then(|raw| {
        let parsed = DeliveryStatus::parse(raw);
        if parsed.is_none() {
            errors.add(
                "status",
                "must be one of pending, sent, failed, skipped, delivered, bounced, complained",
            );
        }
        parsed
    });
    let channel = query
        .get("channel")
        .and_then(|raw| match Channel::parse(raw) {
            Ok(channel) => Some(channel),
            Err(e) => {
                errors.add("channel", e.0);
                None
            }
        });
    errors.finish()?;
    if state.app.store.get_notification(&id).await?.is_none() {
        return Err(ApiError::not_found("notification"));
    }
    let mut result = state
        .app
        .store
        .list_deliveries(&id, page.limit, page.cursor.as_deref())
        .await?;
    // Filtered per page, as DynamoDB's FilterExpression does: a page may hold fewer than
    // `limit`, even none, and still have a `next_cursor`; no request reads more than a page.
    result.items.retain(|d| {
        status.is_none_or(|s| d.status == s) && channel.is_none_or(|c| d.key.channel == c)
    });
    Ok(Json(PageView::of(&result, DeliveryView::from)).into_response())
}

/// A delivery's message as it renders now (`services::preview`), for the console.
pub async fn message(
    State(state): State<ApiState>,
    axum::extract::Path((id, recipient, channel)): axum::extract::Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let id = NotificationId::parse(&id)
        .map_err(|e| errors.add("id", e.0))
        .ok();
    let channel = Channel::parse(&channel)
        .map_err(|e| errors.add("channel", e.0))
        .ok();
    errors.finish()?;
    let (Some(id), Some(channel)) = (id, channel) else {
        return Err(ApiError::not_found("delivery"));
    };
    let rendered = state
        .app
        .preview
        .message(&id, &recipient, channel)
        .await?
        .map_err(|why| ApiError::conflict(format!("the message cannot be rendered: {why}")))?;
    Ok(Json(MessageView::new(&id, &recipient, channel, &rendered)).into_response())
}

/// A rendered message, as the API shows it: the channel's own fields under its name.
#[derive(Serialize)]
struct MessageView<'a> {
    notification_id: &'a NotificationId,
    recipient: &'a str,
    channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<EmailView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sms: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_app: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<Value>,
}

impl<'a> MessageView<'a> {
    fn new(
        id: &'a NotificationId,
        recipient: &'a str,
        channel: Channel,
        rendered: &Rendered,
    ) -> Self {
        let mut view = Self {
            notification_id: id,
            recipient,
            channel,
            email: None,
            sms: None,
            in_app: None,
            push: None,
        };
        match rendered {
            Rendered::Email(email) => {
                // Built by us a moment ago: it parses; if it somehow did not, the raw text shows.
                view.email = Some(EmailView::parse_or_text(&email.raw));
            }
            Rendered::Sms(sms) => {
                view.sms = Some(serde_json::json!({"to": sms.to, "body": sms.body}));
            }
            Rendered::InApp(item) => {
                view.in_app = Some(serde_json::json!({
                    "title": item.title, "body": item.body, "url": item.url.as_ref().map(|u| u.as_str()),
                }));
            }
            Rendered::Push(message) => {
                view.push = Some(serde_json::json!({
                    "title": message.title, "body": message.body, "url": message.url,
                }));
            }
        }
        view
    }
}

pub async fn cancel(
    State(state): State<ApiState>,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    let n = state.app.cancel(&id).await?;
    let counts = state.app.store.counts(&id).await?;
    Ok(Json(NotificationView::new(&n, Some(counts))).into_response())
}

pub async fn reschedule(
    State(state): State<ApiState>,
    PathId(id): PathId<NotificationId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let send_at = input::object(&body, "", &["send_at"], &mut errors).and_then(|map| {
        if map.get("send_at").is_none_or(Value::is_null) {
            errors.add("send_at", "is required");
            return None;
        }
        input::parsed(map, "", "send_at", &mut errors, |raw| {
            SendAt::parse(raw, state.app.clock.now())
        })
    });
    errors.finish()?;
    let send_at = send_at.ok_or_else(|| ApiError::invalid("send_at", "is required"))?;
    let n = state.app.reschedule(&id, send_at).await?;
    let counts = state.app.store.counts(&id).await?;
    Ok(Json(NotificationView::new(&n, Some(counts))).into_response())
}

/// Sends the failed deliveries again; 202, as the work happens after the answer.
pub async fn retry(
    State(state): State<ApiState>,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    let n = state.app.retry(&id).await?;
    let counts = state.app.store.counts(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(NotificationView::new(&n, Some(counts))),
    )
        .into_response())
}
