use serde::{Deserialize, Serialize};

use crate::domain::{GroupId, UserId};

/// A subscription list. Members are resolved when a send to the group fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub member_count: u64,
}

/// At most this many ids in one `POST /v1/groups/{id}/members`.
pub const MAX_MEMBER_CHANGES: usize = 1000;

/// The segment of a group's memberships that `user` belongs to, of `segments`: stable across
/// processes and versions (FNV-1a of the id), so that every writer and reader agrees.
pub fn member_segment(user: &UserId, segments: u32) -> u32 {
    let hash = user
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % u64::from(segments.max(1))) as u32
}
