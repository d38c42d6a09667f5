//! The HTTP API of `../shared/API.md`: one axum `Router`, served by `axum::serve` in `notifyd`
//! and by `lambda_http::run` in the api Lambda.

mod api_keys;
mod categories;
mod console;
mod error;
mod groups;
mod inbox;
mod input;
mod notifications;
mod openapi;
mod outbox;
mod path;
mod preferences;
mod push_subscriptions;
mod suppressions;
mod templates;
mod unsubscribe;
mod user_tokens;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ports::Outbox;
use crate::services::App;
use crate::services::api_keys::{Access, ApiKeys};
use crate::services::keyed_limit::KeyedLimit;

pub use error::ApiError;
pub use input::BODY_LIMIT;
pub use openapi::OPENAPI_JSON;

/// Renders the process's metrics in Prometheus text format (`notifyd`'s recorder).
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// What every route reaches, behind one `Arc`: axum clones the state for each route and
/// method as the router is built, at every cold start of the api function, and for each
/// request; one reference count is cheaper than a dozen and a string.
#[derive(Clone)]
pub struct ApiState(Arc<ApiServices>);

pub struct ApiServices {
    pub app: App,
    keys: Arc<ApiKeys>,
    /// `/u/{token}`: per link and per client address (see `unsubscribe`).
    unsubscribe_limits: unsubscribe::Limits,
    /// Failed authentications per client address: 30 a minute.
    failed_auth: KeyedLimit,
    metrics: Option<MetricsText>,
    vapid_public_key: Option<String>,
    outbox: Option<Arc<dyn Outbox>>,
}

impl std::ops::Deref for ApiState {
    type Target = ApiServices;

    fn deref(&self) -> &ApiServices {
        &self.0
    }
}

/// What differs between the runtimes' APIs.
#[derive(Default)]
pub struct ApiOptions {
    /// Serves `GET /metrics` (behind the API key), where the runtime has them as text (on AWS
    /// they are EMF lines in the functions' logs instead).
    pub metrics: Option<MetricsText>,
    /// The product's web origins, allowed to call the inbox routes from a browser (CORS).
    pub cors_origins: Vec<HeaderValue>,
    /// The VAPID public key browsers subscribe with, where push is configured.
    pub vapid_public_key: Option<String>,
    /// What was "sent" without a provider (`notifyd`'s outbox folder), shown by the console.
    pub outbox: Option<Arc<dyn Outbox>>,
}

/// `NOTIFY_CORS_ORIGINS`: web origins (`https://app.example.com`), separated by commas.
pub fn parse_cors_origins(raw: &str) -> Result<Vec<HeaderValue>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|origin| {
            let url = url::Url::parse(origin).map_err(|e| format!("{origin:?}: {e}"))?;
            let bare = matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.path() == "/"
                && !origin.ends_with('/')
                && url.query().is_none()
                && url.username().is_empty();
            if !bare {
                return Err(format!(
                    "{origin:?} is not an origin such as https://app.example.com"
                ));
            }
            HeaderValue::from_str(origin).map_err(|e| format!("{origin:?}: {e}"))
        })
        .collect()
}

pub fn router(app: App, keys: Arc<ApiKeys>, options: ApiOptions) -> Router {
    let state = ApiState(Arc::new(ApiServices {
        app,
        keys,
        unsubscribe_limits: unsubscribe::Limits::default(),
        failed_auth: KeyedLimit::new(0.5, 30, 10_000),
        metrics: options.metrics,
        vapid_public_key: options.vapid_public_key,
        outbox: options.outbox,
    }));
    // Outermost, so that it answers preflights (which no route takes) too; only for the
    // end-user routes, the ones a browser calls.
    let origins = options.cors_origins;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, request| {
            is_end_user_route(request.uri.path()) && origins.contains(origin)
        }))
        // DELETE: a page removes its own push subscription (`DELETE /v1/users/{id}/push-subscriptions/{sid}`).
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    // A user's push subscriptions: the backend's API key, or that user's own token.
    let push_subscriptions = Router::new()
        .route(
            "/v1/users/{user_id}/push-subscriptions",
            get(push_subscriptions::list).post(push_subscriptions::create),
        )
        .route(
            "/v1/users/{user_id}/push-subscriptions/{subscription_id}",
            axum::routing::delete(push_subscriptions::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_key_or_own_token,
        ));
    let metrics_route = Router::new()
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let v1 = Router::new()
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route(
            "/v1/api-keys/{key_id}",
            axum::routing::delete(api_keys::revoke),
        )
        .route(
            "/v1/users/{user_id}",
            get(users::get).put(users::put).delete(users::delete),
        )
        .route(
            "/v1/templates/{template_id}",
            get(templates::get)
                .put(templates::put)
                .delete(templates::delete),
        )
        .route(
            "/v1/groups/{group_id}",
            get(groups::get).put(groups::put).delete(groups::delete),
        )
        .route(
            "/v1/groups/{group_id}/members",
            get(groups::members).post(groups::change),
        )
        .route(
            "/v1/groups/{group_id}/members/{user_id}",
            axum::routing::put(groups::subscribe).delete(groups::unsubscribe),
        )
        .route(
            "/v1/users/{user_id}/tokens",
            axum::routing::post(user_tokens::create).delete(user_tokens::revoke),
        )
        .route(
            "/v1/users/{user_id}/preferences",
            get(preferences::get).put(preferences::put),
        )
        .route(
            "/v1/categories/{category_id}",
            get(categories::get)
                .put(categories::put)
                .delete(categories::delete),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{webhook_id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/v1/webhooks/{webhook_id}/enable",
            axum::routing::post(webhooks::enable),
        )
        .route("/v1/outbox/emails", get(outbox::emails))
        .route("/v1/outbox/emails/{id}", get(outbox::email))
        .route("/v1/outbox/sms", get(outbox::sms))
        .route("/v1/suppressions", get(suppressions::list))
        .route(
            "/v1/suppressions/{address}",
            get(suppressions::get)
                .put(suppressions::put)
                .delete(suppressions::delete),
        )
        .route(
            "/v1/notifications",
            get(notifications::list).post(notifications::create),
        )
        .route(
            "/v1/notifications/{id}",
            get(notifications::get)
                .delete(notifications::cancel)
                .patch(notifications::reschedule),
        )
        .route(
            "/v1/notifications/{id}/deliveries",
            get(notifications::deliveries),
        )
        .route(
            "/v1/notifications/{id}/deliveries/{recipient}/{channel}/message",
            get(notifications::message),
        )
        .route(
            "/v1/notifications/{id}/retry",
            axum::routing::post(notifications::retry),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    // One router, the API key's, that the others join: a route added after a `route_layer` is
    // not behind it, and `merge` inserts the merged router's routes again (work that every cold
    // start of the api function repeats), so the smaller routers are merged into the largest.
    let routes = v1
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/openapi.json", get(openapi::serve))
        // The console's files are public; what they show comes from the API, with a key.
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        // The one-click unsubscribe link: its token is its authority, not an API key.
        .route(
            "/u/{token}",
            get(unsubscribe::page).post(unsubscribe::confirm),
        )
        .route(
            "/v1/push/vapid-public-key",
            get(push_subscriptions::vapid_public_key),
        )
        // The end-user routes: a user token is their authority (`inbox::InboxUser`), not an
        // API key, and the product's own pages call them from the browser.
        .route("/v1/inbox", get(inbox::list))
        .route("/v1/inbox/count", get(inbox::count))
        .route("/v1/inbox/stream", get(inbox::stream))
        .route("/v1/inbox/read-all", axum::routing::post(inbox::read_all))
        .route("/v1/inbox/seen-all", axum::routing::post(inbox::seen_all))
        .route("/v1/inbox/{id}/read", axum::routing::post(inbox::read))
        .route("/v1/inbox/{id}/unread", axum::routing::post(inbox::unread))
        .route(
            "/v1/inbox/{id}/archive",
            axum::routing::post(inbox::archive),
        )
        .merge(metrics_route)
        .merge(push_subscriptions)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // The layers wrap the router once. `Router::layer` would wrap each of its ~50 routes,
    // and that work is part of every cold start of the api function.
    let layered = tower::ServiceBuilder::new()
        // A span per request (method, path; never a header, so never the key), its status
        // and latency logged as it ends.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The path only (a query may hold an inbox stream's user token), and an
                // unsubscribe link's token left out: it is a credential for its user.
                let path = request.uri().path();
                let path = if path.starts_with("/u/") {
                    "/u/{token}"
                } else {
                    path
                };
                tracing::debug_span!("request", method = %request.method(), path = %path)
            }),
        )
        // Outside the routes, so that it answers preflights (which no route takes) too.
        .layer(cors)
        .layer(middleware::from_fn(error::log_server_errors))
        // No answer is ever sniffed into something it does not say it is.
        .layer(middleware::map_response(nosniff))
        // `JsonBody` enforces BODY_LIMIT itself, to answer 413 as problem+json.
        .layer(DefaultBodyLimit::disable())
        .service(routes);
    Router::new().fallback_service(layered)
}

impl ApiServices {
    /// Past its failed authentications, a client address gets in only with a key this process
    /// knows without a read; anything else is answered 429 without costing a store read or a
    /// signature check.
    fn over_failures(
        &self,
        client: Option<ClientAddr>,
        presented: Option<&str>,
    ) -> Option<std::time::Duration> {
        let ClientAddr(ip) = client?;
        let wait = self.failed_auth.exhausted(&ip.to_string())?;
        match presented {
            Some(secret) if self.keys.known_in_memory(secret) => None,
            _ => Some(wait),
        }
    }

    /// An authentication of `client` failed.
    fn failed(&self, client: Option<ClientAddr>) {
        if let Some(ClientAddr(ip)) = client {
            let _ = self.failed_auth.take(&ip.to_string());
        }
    }
}

/// The address of the client a request came from, as the runtime saw it (notifyd: the TCP
/// peer; on AWS: API Gateway's source IP). Behind a reverse proxy it is the proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

async fn nosniff(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// The routes a user's browser calls with a user token.
fn is_end_user_route(path: &str) -> bool {
    path == "/v1/inbox"
        || path.starts_with("/v1/inbox/")
        || path == "/v1/push/vapid-public-key"
        || (path.starts_with("/v1/users/") && path.contains("/push-subscriptions"))
}

/// The API key, or a user token of the user the path names.
async fn require_key_or_own_token(
    State(state): State<ApiState>,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    // No credential costs nothing to refuse: always 401, never counted.
    let Some(presented) = bearer(&headers) else {
        return ApiError::Unauthorized.into_response();
    };
    let client = request.extensions().get::<ClientAddr>().copied();
    if let Some(wait) = state.over_failures(client, Some(presented)) {
        return ApiError::RateLimited(wait).into_response();
    }
    match state.keys.authorize(presented).await {
        Ok(Access::Allowed) => return next.run(request).await,
        Ok(Access::Limited(wait)) => return ApiError::RateLimited(wait).into_response(),
        Ok(Access::Unknown) => {}
        Err(e) => return ApiError::Service(e).into_response(),
    }
    match state
        .app
        .user_tokens
        .verify(state.app.store.as_ref(), presented)
        .await
    {
        Ok(Ok(token))
            if params.get("user_id").map(String::as_str) == Some(token.user_id.as_str()) =>
        {
            next.run(request).await
        }
        Ok(_) => {
            state.failed(client);
            ApiError::Unauthorized.into_response()
        }
        Err(e) => ApiError::Service(e).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
}

async fn require_api_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    // No credential costs nothing to refuse: always 401, never counted.
    let Some(presented) = bearer(&headers) else {
        return ApiError::Unauthorized.into_response();
    };
    let client = request.extensions().get::<ClientAddr>().copied();
    if let Some(wait) = state.over_failures(client, Some(presented)) {
        return ApiError::RateLimited(wait).into_response();
    }
    match state.keys.authorize(presented).await {
        Ok(Access::Allowed) => next.run(request).await,
        Ok(Access::Unknown) => {
            state.failed(client);
            ApiError::Unauthorized.into_response()
        }
        Ok(Access::Limited(wait)) => ApiError::RateLimited(wait).into_response(),
        Err(e) => ApiError::Service(e).into_response(),
    }
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    error::problem(
        StatusCode::NOT_FOUND,
        "no-route",
        "Not found",
        "no such route",
        &[],
    )
}

async fn method_not_allowed() -> Response {
    error::problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take that method",
        &[],
    )
}
