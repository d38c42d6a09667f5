use axum::http::header;
use axum::response::IntoResponse;

/// The spec lives beside the code that serves it, and tests check that the two agree.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
