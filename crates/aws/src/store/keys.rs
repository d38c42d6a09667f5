//! The key layout: which partition and sort key each item has (see the table in `mod.rs`).

use std::collections::HashMap;

use notify_core::domain::delivery::DeliveryKey;
use notify_core::domain::group::member_segment;
use notify_core::domain::notification::Status;
use notify_core::domain::{Channel, GroupId, NotificationId, UserId};

use super::item::{Item, string};

/// Count items of one notification, each its own partition key: every outcome adds to one of
/// them, so a send of any size spreads its count writes over this many partitions.
pub const COUNT_SHARDS: u64 = 32;

/// Partitions of one notification's delivery rows (by recipient): a big send claims and
/// records thousands of deliveries a second, and one partition key takes about 1,000 writes
/// a second.
pub const DELIVERY_BUCKETS: u64 = 128;

pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("PK".to_owned(), string(pk)), ("SK".to_owned(), string(sk))])
}

/// The partition of a notification's own item and its page markers.
pub fn ntf_pk(id: &NotificationId) -> String {
    format!("N#{id}")
}

pub(super) fn delivery_sk(recipient: &str, channel: Channel) -> String {
    format!("D#{recipient}#{channel}")
}

/// FNV-1a: stable across processes and versions, unlike the std hasher.
pub(super) fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The partition of one recipient's delivery rows.
pub fn delivery_pk(id: &NotificationId, recipient: &str) -> String {
    delivery_bucket_pk(id, fnv(recipient) % DELIVERY_BUCKETS)
}

pub(super) fn delivery_bucket_pk(id: &NotificationId, bucket: u64) -> String {
    format!("D#{id}#{bucket}")
}

/// The count item an outcome of `recipient` (or a fanned-out page, by its key) adds to.
pub fn count_pk(id: &NotificationId, recipient: &str) -> String {
    count_shard_pk(id, fnv(recipient) % COUNT_SHARDS)
}

pub(super) fn count_shard_pk(id: &NotificationId, shard: u64) -> String {
    format!("C#{id}#{shard}")
}

pub(super) fn delivery_key(k: &DeliveryKey) -> Item {
    key(
        delivery_pk(&k.notification_id, &k.recipient),
        &delivery_sk(&k.recipient, k.channel),
    )
}

/// The index partition of every notification (`GSI1`) and of those in one status (`GSI2`) is
/// one of `INDEX_SHARDS`, by the notification's id: one index partition key takes about 1,000
/// writes a second, and each notification writes its index entries four times (insert, sending,
/// fanned out, finished), two more for each status change in `GSI2`.
pub const INDEX_SHARDS: u64 = 64;

pub fn index_shard(id: &NotificationId) -> u64 {
    fnv(id.as_str()) % INDEX_SHARDS
}

pub fn all_index_pk(shard: u64) -> String {
    format!("N#{shard:02}")
}

pub fn status_index_pk(status: Status, shard: u64) -> String {
    format!("S#{}#{shard:02}", status.as_str())
}

/// Partitions of one group's memberships (by user): a list of millions is written at more than
/// the ~1,000 writes a second one partition key takes, and the fanout reads every segment at
/// once, each its own partition key.
pub const MEMBER_SEGMENTS: u32 = 32;

pub fn group_pk(id: &GroupId) -> String {
    format!("G#{id}")
}

pub fn member_segment_pk(id: &GroupId, segment: u32) -> String {
    format!("G#{id}#{segment}")
}

pub(super) fn membership_key(group: &GroupId, user: &UserId) -> Item {
    key(
        member_segment_pk(group, member_segment(user, MEMBER_SEGMENTS)),
        &format!("M#{user}"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A segment job records the outcomes of its own members only: they must spread over every
    /// count item and delivery partition, as a whole send's do, or one segment's burst lands on
    /// one count item (when the segment was taken from the same low bits, it did).
    #[test]
    fn one_segments_members_spread_over_every_count_shard_and_delivery_bucket() {
        let users: Vec<UserId> = (0..100_000)
            .map(|i| UserId::parse(&format!("u{i:08}")).unwrap())
            .collect();
        for segment in [0, 7, MEMBER_SEGMENTS - 1] {
            let mine: Vec<&UserId> = users
                .iter()
                .filter(|u| member_segment(u, MEMBER_SEGMENTS) == segment)
                .collect();
            assert!(
                mine.len() > 2_000,
                "segment {segment}: {} members",
                mine.len()
            );
            let shards: HashSet<u64> = mine
                .iter()
                .map(|u| fnv(u.as_str()) % COUNT_SHARDS)
                .collect();
            let buckets: HashSet<u64> = mine
                .iter()
                .map(|u| fnv(u.as_str()) % DELIVERY_BUCKETS)
                .collect();
            assert_eq!(shards.len() as u64, COUNT_SHARDS, "segment {segment}");
            assert_eq!(buckets.len() as u64, DELIVERY_BUCKETS, "segment {segment}");
        }
    }
}
