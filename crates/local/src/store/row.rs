//! Rows to domain types: stored notifications, opaque cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use notify_core::domain::notification::{Notification, Status};
use notify_core::ports::StoreError;

use crate::db::{from_millis, json_err};

pub(super) fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).expect("strings serialize"))
}

pub(super) fn decode_cursor(raw: &str, n: usize) -> Result<Vec<String>, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let parts: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(StoreError::BadCursor)
    }
}

pub(super) fn read_notification(
    body: String,
    status: String,
    send_at: i64,
) -> Result<Notification, StoreError> {
    let mut n: Notification = serde_json::from_str(&body).map_err(json_err)?;
    // The columns are the truth; the body keeps what never changes.
    n.status = Status::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
    n.send_at = from_millis(send_at);
    Ok(n)
}
