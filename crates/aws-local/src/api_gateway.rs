//! API Gateway's part: an HTTP API (payload format 2.0) on a local port, in front of the function
//! whose `HttpApi` events route `/` and `/{proxy+}`. Each request becomes the event API Gateway
//! sends; the function's answer becomes the response. Where the function fails, the answers are
//! API Gateway's: 500 `Internal Server Error`, 503 `Service Unavailable` at its timeout, 413 over
//! the 10 MB payload limit.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::lambda::{Function, Outcome};

/// API Gateway's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub fn router(function: Arc<Function>) -> Router {
    Router::new().fallback(proxy).with_state(function)
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn proxy(State(function): State<Arc<Function>>, request: Request) -> Response {
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let event = event(&parts, &body, &source_ip);
    match function.invoke(event.to_string()).await {
        Outcome::Response(answer) => response(&answer),
        Outcome::Timeout => gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Outcome::Error(_) | Outcome::Crashed(_) => {
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The payload 2.0 event of a request.
fn event(parts: &axum::http::request::Parts, body: &[u8], source_ip: &str) -> Value {
    let path = parts.uri.path();
    let route_key = if path == "/" {
        "ANY /"
    } else {
        "ANY /{proxy+}"
    };
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| Value::from(c.trim())));
            continue;
        }
        // API Gateway joins repeated headers with commas.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or_default();
    let mut query = Map::new();
    for (k, v) in url_pairs(raw_query) {
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let now = jiff::Timestamp::now();
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": crate::emulator::ACCOUNT,
            "apiId": "local",
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost"),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.as_millisecond(),
        },
        "isBase64Encoded": encoded,
    });
    if path != "/" {
        event["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// `a=1&b=x%20y` → pairs, percent-decoded as API Gateway decodes them.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The function's answer as API Gateway turns it into a response: a structured answer
/// (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`), else any JSON as a 200 body.
fn response(answer: &str) -> Response {
    let Ok(value) = serde_json::from_str::<Value>(answer) else {
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(status) = value.get("statusCode").and_then(Value::as_u64) else {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.to_owned(),
        )
            .into_response();
    };
    let body = match value["body"].as_str() {
        Some(b) if value["isBase64Encoded"] == true => {
            match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => bytes,
                Err(_) => {
                    return gateway_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                    );
                }
            }
        }
        Some(b) => b.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in value["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(name.as_str()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.append(name, value);
        }
    }
    for (name, values) in value["multiValueHeaders"].as_object().into_iter().flatten() {
        for v in values.as_array().into_iter().flatten() {
            if let (Ok(name), Some(Ok(v))) = (
                HeaderName::try_from(name.as_str()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                headers.append(name, v);
            }
        }
    }
    for cookie in value["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(v)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append("set-cookie", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_the_event_api_gateway_sends() {
        let request = axum::http::Request::post("/v1/groups/g/members?limit=5&x=a%20b&x=c")
            .header("authorization", "Bearer k")
            .header("accept", "a")
            .header("accept", "b")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let e = event(&parts, b"{\"a\":1}", "127.0.0.1");
        assert_eq!(e["routeKey"], "ANY /{proxy+}");
        assert_eq!(e["rawPath"], "/v1/groups/g/members");
        assert_eq!(e["rawQueryString"], "limit=5&x=a%20b&x=c");
        assert_eq!(e["queryStringParameters"]["x"], "a b,c");
        assert_eq!(e["headers"]["accept"], "a,b");
        assert_eq!(e["pathParameters"]["proxy"], "v1/groups/g/members");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["body"], "{\"a\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        let parsed: Result<aws_lambda_events::apigw::ApiGatewayV2httpRequest, _> =
            serde_json::from_value(e);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn a_binary_body_is_base64_and_a_bad_answer_is_a_500() {
        let (parts, ()) = axum::http::Request::put("/").body(()).unwrap().into_parts();
        let e = event(&parts, &[0xff, 0xfe], "::1");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "//4=");
        assert_eq!(e["routeKey"], "ANY /");
        assert_eq!(response("not json").status(), 500);
        assert_eq!(
            response(r#"{"statusCode": 204, "headers": {"x-a": "1"}}"#).status(),
            204
        );
    }
}
