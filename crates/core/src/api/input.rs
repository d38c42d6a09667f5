//! Reading request bodies and query strings into domain types, naming every bad field.
//!
//! Bodies are parsed to a JSON value first (400 if that fails), then walked by hand so that
//! every invalid and every unknown field is reported at once, by its JSON path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use super::ApiError;
use crate::domain::ParseError;
use crate::services::FieldError;

pub const BODY_LIMIT: usize = 256 * 1024;
/// A body somewhat over the limit is still read to its end before the 413, so that the client,
/// which may still be writing, reads the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 4 * BODY_LIMIT;

/// A JSON body; the rejection is problem+json like every other error.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(req).await?.map(JsonBody).ok_or_else(|| {
            ApiError::Malformed("the request body is empty; send a JSON object".into())
        })
    }
}

/// A route whose body may be left out takes `Option<JsonBody>`.
impl<S: Send + Sync> axum::extract::OptionalFromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Option<Self>, ApiError> {
        Ok(read_json(req).await?.map(JsonBody))
    }
}

/// The body as JSON; `None` if it is empty.
async fn read_json(req: Request) -> Result<Option<Value>, ApiError> {
    {
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return Err(ApiError::TooLarge);
        }
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT)
            .await
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    ApiError::TooLarge
                } else {
                    ApiError::Malformed("the request body could not be read".into())
                }
            })?;
        if bytes.len() > BODY_LIMIT {
            return Err(ApiError::TooLarge);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::Malformed(format!("the body is not valid JSON: {e}")))
    }
}

/// Collects field errors; `finish` fails with all of them.
#[derive(Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::fields(self.0))
        }
    }
}

pub fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Unknown fields named one by one in an answer, per object.
pub const MAX_UNKNOWN_LISTED: usize = 20;

/// `value` as an object whose keys are all in `allowed`; an unknown key (a typo like `sendAt`)
/// is an error, never silently ignored.
pub fn object<'a>(
    value: &'a Value,
    at: &str,
    allowed: &[&str],
    errors: &mut Errors,
) -> Option<&'a Map<String, Value>> {
    let Value::Object(map) = value else {
        errors.add(
            if at.is_empty() { "body" } else { at },
            format!("must be an object, not {}", type_name(value)),
        );
        return None;
    };
    let unknown: Vec<&String> = map
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .collect();
    // Each is named, up to a point: a body of thousands of unknown keys must not get an
    // answer many times its size.
    for key in unknown.iter().take(MAX_UNKNOWN_LISTED) {
        errors.add(
            path(at, key),
            format!(
                "is not a known field (expected one of: {})",
                allowed.join(", ")
            ),
        );
    }
    if unknown.len() > MAX_UNKNOWN_LISTED {
        errors.add(
            if at.is_empty() { "body" } else { at },
            format!(
                "has {} more fields that are not known",
                unknown.len() - MAX_UNKNOWN_LISTED
            ),
        );
    }
    Some(map)
}

/// A string field; absent or null gives `None`, another type is an error.
pub fn string<'a>(
    map: &'a Map<String, Value>,
    at: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<&'a str> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.add(
                path(at, key),
                format!("must be a string, not {}", type_name(other)),
            );
            None
        }
    }
}

/// A string field parsed into a domain type.
pub fn parsed<T>(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    errors: &mut Errors,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Option<T> {
    let raw = string(map, at, key, errors)?;
    match parse(raw) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.add(path(at, key), e.0);
            None
        }
    }
}

pub fn boolean(map: &Map<String, Value>, at: &str, key: &str, errors: &mut Errors) -> Option<bool> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            errors.add(
                path(at, key),
                format!("must be true or false, not {}", type_name(other)),
            );
            None
        }
    }
}

/// A text field with a size bound, so one part cannot fill the whole body limit unnoticed.
/// A string of at most `max_chars` characters (as JSON Schema's `maxLength` counts).
pub fn text_chars(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    max_chars: usize,
    errors: &mut Errors,
) -> Option<String> {
    let s = string(map, at, key, errors)?;
    if s.chars().count() > max_chars {
        errors.add(
            path(at, key),
            format!("must be at most {max_chars} characters"),
        );
        return None;
    }
    Some(s.to_owned())
}

pub fn text(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    max_bytes: usize,
    errors: &mut Errors,
) -> Option<String> {
    let s = string(map, at, key, errors)?;
    if s.len() > max_bytes {
        errors.add(path(at, key), format!("must be at most {max_bytes} bytes"));
        return None;
    }
    Some(s.to_owned())
}

/// `?limit=&cursor=` of every list.
pub struct PageQuery {
    pub limit: usize,
    pub cursor: Option<String>,
}

pub fn page_query(
    query: &std::collections::HashMap<String, String>,
    errors: &mut Errors,
) -> PageQuery {
    let limit = match query.get("limit") {
        None => 100,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                errors.add("limit", "must be a whole number from 1 to 1000");
                100
            }
        },
    };
    let cursor = query.get("cursor").filter(|c| !c.is_empty()).cloned();
    PageQuery { limit, cursor }
}

/// A body that is `{"name": "..."}` and nothing else, the name 1 to `max` bytes and not blank.
pub fn name_only(body: &Value, max: usize, errors: &mut Errors) -> Option<String> {
    let name = object(body, "", &["name"], errors)
        .and_then(|m| string(m, "", "name", errors).map(str::to_owned));
    match &name {
        Some(n) if n.trim().is_empty() || n.len() > max => {
            errors.add("name", format!("must be 1 to {max} characters"));
            None
        }
        None if errors.is_empty() => {
            errors.add("name", "is required");
            None
        }
        _ => name,
    }
}
