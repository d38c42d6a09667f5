//! The end-user routes of the in-app inbox, called by the product's own front end with a user
//! token (`POST /v1/users/{id}/tokens`), never with the API key. Each route sees only the
//! token's user.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::ApiError;
use super::ApiState;
use super::groups::PageView;
use super::input::{self, Errors};
use super::path::PathId;
use crate::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark};
use crate::domain::{CategoryId, NotificationId, UserId};
use crate::services::inbox::{Inbox, InboxChange};
use crate::services::stream_slots::TooManyStreams;

/// How often an idle stream sends a comment, so proxies do not close it.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Items a stream reads from the store at a time while catching up.
const REPLAY_PAGE: usize = 100;
/// Without a live feed (on AWS), a stream sends what is stored and closes; the browser comes
/// back after this long, with `Last-Event-ID`.
pub const POLL_RETRY: Duration = Duration::from_secs(3);

/// The user a request's user token stands for. Only the stream also takes it as `?token=`,
/// because a browser's `EventSource` cannot send headers.
pub struct InboxUser(pub UserId);

impl FromRequestParts<ApiState> for InboxUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        InboxSession::from_request_parts(parts, state)
            .await
            .map(|s| Self(s.user))
    }
}

/// The user a request's token stands for, and until when: a stream ends when its token does.
pub struct InboxSession {
    pub user: UserId,
    pub expires_at: jiff::Timestamp,
}

impl FromRequestParts<ApiState> for InboxSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let from_header = super::bearer(&parts.headers).map(str::to_owned);
        let from_query = || {
            parts.uri.path().ends_with("/inbox/stream").then(|| {
                url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            })?
        };
        // No credential costs nothing to refuse: always 401, never counted.
        let presented = from_header
            .or_else(from_query)
            .ok_or(ApiError::BadUserToken("no user token"))?;
        let client = parts.extensions.get::<super::ClientAddr>().copied();
        if let Some(wait) = state.over_failures(client, Some(&presented)) {
            return Err(ApiError::RateLimited(wait));
        }
        match state
            .app
            .user_tokens
            .verify(state.app.store.as_ref(), &presented)
            .await?
        {
            Ok(token) => Ok(Self {
                user: token.user_id,
                expires_at: token.expires_at,
            }),
            Err(e) => Err({
                state.failed(client);
                ApiError::BadUserToken(match e {
                    crate::domain::user_token::BadUserToken::Invalid => {
                        "the user token is not valid"
                    }
                    crate::domain::user_token::BadUserToken::Expired => {
                        "the user token has expired"
                    }
                    crate::domain::user_token::BadUserToken::Revoked => {
                        "the user token was revoked"
                    }
                })
            }),
        }
    }
}

/// An inbox item as the API shows it; `id` is its notification's.
#[derive(Serialize)]
struct ItemView<'a> {
    id: &'a NotificationId,
    seq: u64,
    title: Option<&'a str>,
    body: &'a str,
    url: Option<&'a str>,
    category: Option<&'a CategoryId>,
    data: &'a serde_json::Map<String, serde_json::Value>,
    created_at: jiff::Timestamp,
    seen_at: Option<jiff::Timestamp>,
    read_at: Option<jiff::Timestamp>,
    archived_at: Option<jiff::Timestamp>,
}

impl<'a> From<&'a InboxItem> for ItemView<'a> {
    fn from(i: &'a InboxItem) -> Self {
        Self {
            id: &i.item.notification_id,
            seq: i.seq,
            title: i.item.title.as_deref(),
            body: &i.item.body,
            url: i.item.url.as_ref().map(|u| u.as_str()),
            category: i.item.category.as_ref(),
            data: &i.item.data,
            created_at: i.item.created_at,
            seen_at: i.seen_at,
            read_at: i.read_at,
            archived_at: i.archived_at,
        }
    }
}

#[derive(Serialize)]
struct CountsView {
    unread: u64,
    unseen: u64,
}

impl From<InboxCounts> for CountsView {
    fn from(c: InboxCounts) -> Self {
        Self {
            unread: c.unread,
            unseen: c.unseen,
        }
    }
}

fn flag(query: &HashMap<String, String>, name: &str, errors: &mut Errors) -> bool {
    match query.get(name).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.add(name, "must be true or false");
            false
        }
    }
}

pub async fn list(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let page = input::page_query(&query, &mut errors);
    let filter = InboxFilter {
        unread_only: flag(&query, "unread", &mut errors),
        archived: flag(&query, "archived", &mut errors),
    };
    errors.finish()?;
    let result = state
        .app
        .inbox
        .list(&user, &filter, page.cursor.as_deref(), page.limit)
        .await?;
    Ok(Json(PageView::of(&result, ItemView::from)).into_response())
}

pub async fn count(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
) -> Result<Response, ApiError> {
    let counts = state.app.inbox.counts(&user).await?;
    Ok(Json(CountsView::from(counts)).into_response())
}

async fn mark_one(
    state: &ApiState,
    user: &UserId,
    id: &NotificationId,
    mark: InboxMark,
) -> Result<Response, ApiError> {
    let item = state
        .app
        .inbox
        .mark(user, id, mark)
        .await?
        .ok_or(ApiError::not_found("inbox item"))?;
    Ok(Json(ItemView::from(&item)).into_response())
}

pub async fn read(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    mark_one(&state, &user, &id, InboxMark::Read).await
}

pub async fn unread(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    mark_one(&state, &user, &id, InboxMark::Unread).await
}

pub async fn archive(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
    PathId(id): PathId<NotificationId>,
) -> Result<Response, ApiError> {
    mark_one(&state, &user, &id, InboxMark::Archived).await
}

async fn mark_all(state: &ApiState, user: &UserId, mark: InboxMark) -> Result<Response, ApiError> {
    let changed = state.app.inbox.mark_all(user, mark).await?;
    Ok(Json(serde_json::json!({ "changed": changed })).into_response())
}

pub async fn read_all(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
) -> Result<Response, ApiError> {
    mark_all(&state, &user, InboxMark::Read).await
}

pub async fn seen_all(
    State(state): State<ApiState>,
    InboxUser(user): InboxUser,
) -> Result<Response, ApiError> {
    mark_all(&state, &user, InboxMark::Seen).await
}

/// `GET /v1/inbox/stream`: Server-Sent Events of the user's new items (`event: item`) and
/// counts (`event: counts`, first at once). Every event's `id` is the newest item's `seq` the
/// stream has covered, so a browser that reconnects with `Last-Event-ID` gets exactly what it
/// missed.
pub async fn stream(
    State(state): State<ApiState>,
    InboxSession { user, expires_at }: InboxSession,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let raw = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .or_else(|| query.get("last_event_id").cloned())
        .filter(|s| !s.is_empty());
    let last = match raw.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            return Err(ApiError::invalid(
                "Last-Event-ID",
                "must be the id of an event of this stream (a whole number)",
            ));
        }
    };
    let inbox = state.app.inbox.clone();
    // A slot first: the user's oldest stream closes if they have their fill; past the
    // process's ceiling the client is asked to come back.
    let slot = match inbox.live().map(|live| live.slots().open(&user)) {
        None => None,
        Some(Ok(slot)) => Some(slot),
        Some(Err(TooManyStreams)) => return Err(ApiError::RateLimited(Duration::from_secs(5))),
    };
    // The stream ends when its token does: a token is a credential for a while, not for ever.
    let left = expires_at.duration_since(state.app.clock.now());
    let until_expiry = Duration::try_from(left).unwrap_or(Duration::ZERO);
    // Subscribed before the first read, so nothing falls between the read and the feed.
    let live: Option<Live> = inbox.live().map(|live| {
        let server_closing = live.closed();
        let evicted = slot.map(|s| s.closed());
        let ends = async move {
            tokio::select! {
                () = server_closing => {}
                () = async { match evicted { Some(e) => e.await, None => std::future::pending().await } } => {}
                () = tokio::time::sleep(until_expiry) => {}
            }
        };
        (live.subscribe(), Box::pin(ends) as _)
    });
    let counts = inbox.counts(&user).await?;
    let start = last.unwrap_or(counts.last_seq);
    let is_live = live.is_some();
    let sse = Sse::new(events(inbox, user, start, counts, live));
    let mut response = if is_live {
        sse.keep_alive(KeepAlive::new().interval(HEARTBEAT))
            .into_response()
    } else {
        sse.into_response()
    };
    // Proxies must pass each event on at once.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

fn item_event(item: &InboxItem) -> Event {
    Event::default()
        .event("item")
        .id(item.seq.to_string())
        .json_data(ItemView::from(item))
        .expect("an item serializes")
}

fn counts_event(counts: InboxCounts, covered: u64) -> Event {
    Event::default()
        .event("counts")
        .id(covered.to_string())
        .json_data(CountsView::from(counts))
        .expect("counts serialize")
}

/// A live stream's feed, and what ends it (the server shutting down, a newer stream of the
/// same user taking its slot, its token expiring).
type Live = (
    tokio::sync::broadcast::Receiver<InboxChange>,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
);

fn events(
    inbox: std::sync::Arc<Inbox>,
    user: UserId,
    start: u64,
    counts: InboxCounts,
    mut live: Option<Live>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let mut covered = start;
        yield Ok(counts_event(counts, covered));
        // What the client missed, then (live) what happens; after a gap in the feed (it lagged,
        // or an item came before one still being written) the store fills it in.
        let mut catch_up = true;
        loop {
            if catch_up {
                loop {
                    let items = match inbox.since(&user, covered, REPLAY_PAGE).await {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!(error = %e, "inbox stream could not read the store; closing it");
                            return;
                        }
                    };
                    let full = items.len() == REPLAY_PAGE;
                    for item in &items {
                        covered = item.seq;
                        yield Ok(item_event(item));
                    }
                    if !full {
                        break;
                    }
                }
                catch_up = false;
            }
            let Some((feed, closed)) = live.as_mut() else {
                yield Ok(Event::default().retry(POLL_RETRY).comment("come back for more"));
                return;
            };
            let change = tokio::select! {
                _ = closed => return,
                change = feed.recv() => change,
            };
            match change {
                Ok(change) if change.user() != &user => {}
                Ok(InboxChange::Item(item)) if item.seq <= covered => {}
                Ok(InboxChange::Item(item)) if item.seq == covered + 1 => {
                    covered = item.seq;
                    yield Ok(item_event(&item));
                }
                Ok(InboxChange::Item(_)) => catch_up = true,
                Ok(InboxChange::Counts { counts, .. }) => yield Ok(counts_event(counts, covered)),
                Err(RecvError::Lagged(_)) => {
                    catch_up = true;
                    if let Ok(counts) = inbox.counts(&user).await {
                        yield Ok(counts_event(counts, covered));
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
