//! Items to domain types and back: attribute values, stored JSON bodies, opaque cursors.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use notify_core::domain::GroupId;
use notify_core::domain::delivery::Delivery;
use notify_core::domain::group::Group;
use notify_core::domain::notification::{Notification, Status};
use notify_core::ports::StoreError;

use super::keys::delivery_key;

pub(super) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(super) fn string(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute (DynamoDB sends numbers as text).
pub(super) fn number(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Reading an item's attributes by name; an absent or mistyped attribute is `None`.
pub(super) trait ItemExt {
    fn string(&self, name: &str) -> Option<&str>;
    fn number(&self, name: &str) -> Option<i64>;
}

impl ItemExt for Item {
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }

    fn number(&self, name: &str) -> Option<i64> {
        self.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    }
}

pub(super) fn body<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let raw = item
        .string("body")
        .ok_or_else(|| StoreError::Corrupt("item without body".into()))?;
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::unavailable("JSON", e))
}

pub(super) fn delivery_item(d: &Delivery) -> Item {
    let mut item = delivery_key(&d.key);
    item.insert("recipient".into(), string(&d.key.recipient));
    item.insert("channel".into(), string(d.key.channel.as_str()));
    item.insert("status".into(), string(d.status.as_str()));
    item.insert("attempts".into(), number(d.attempts));
    if let Some(u) = &d.user_id {
        item.insert("user_id".into(), string(u.as_str()));
    }
    if let Some(a) = &d.address {
        item.insert("address".into(), string(a));
    }
    if let Some(e) = &d.error {
        item.insert("error".into(), string(e));
    }
    item
}

pub(super) fn read_group(id: &GroupId, item: &Item) -> Group {
    Group {
        id: id.clone(),
        name: item.string("name").unwrap_or_default().to_owned(),
        member_count: item.number("member_count").unwrap_or(0).max(0) as u64,
    }
}

pub(super) fn read_notification(item: &Item) -> Result<Notification, StoreError> {
    let mut n: Notification = body(item)?;
    let status = item.string("status").unwrap_or_default();
    n.status = Status::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
    n.send_at = item
        .number("send_at")
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(n.send_at);
    Ok(n)
}

/// An opaque cursor: the key attributes of the last item of a page.
/// The same key always makes the same cursor (keys in sorted order, not a `HashMap`'s random
/// one): the fanout keys a page by the cursor that led to it, and a page read again with a
/// differently spelled cursor would be counted again.
pub(super) fn encode_cursor(item: &Item, names: &[&str]) -> String {
    let map: std::collections::BTreeMap<&str, &str> = names
        .iter()
        .filter_map(|k| item.string(k).map(|v| (*k, v)))
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).expect("strings serialize"))
}

pub(super) fn decode_cursor(raw: &str, names: &[&str]) -> Result<Item, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let map: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    if map.len() != names.len() || !names.iter().all(|k| map.contains_key(*k)) {
        return Err(StoreError::BadCursor);
    }
    Ok(map.into_iter().map(|(k, v)| (k, string(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor is part of a fanout page's key: the same position must always be spelled the
    /// same, whatever order a map of its attributes iterates in.
    #[test]
    fn a_cursor_is_the_same_every_time_for_the_same_key() {
        let first = encode_cursor(
            &HashMap::from([
                ("PK".to_owned(), string("G#all#3".to_owned())),
                ("SK".to_owned(), string("M#u1".to_owned())),
            ]),
            &["PK", "SK"],
        );
        for _ in 0..64 {
            let item: Item = HashMap::from([
                ("SK".to_owned(), string("M#u1".to_owned())),
                ("PK".to_owned(), string("G#all#3".to_owned())),
                ("user_id".to_owned(), string("u1".to_owned())),
            ]);
            assert_eq!(encode_cursor(&item, &["PK", "SK"]), first);
            assert_eq!(encode_cursor(&item, &["SK", "PK"]), first);
        }
        let back = decode_cursor(&first, &["PK", "SK"]).unwrap();
        assert_eq!(back.string("SK"), Some("M#u1"));
    }
}
