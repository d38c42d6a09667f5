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
/// processes and versions, so that every writer and reader agrees.
///
/// FNV-1a of the id, then MurmurHash3's 64-bit finalizer. FNV alone will not do: its high bits
/// hardly change between short ids ("s00" to "s39" all land in one segment of 8), and the
/// DynamoDB store picks a delivery's count shard and partition from its low bits, so a segment
/// taken from those would send all of one segment job's outcomes to one count item.
pub fn member_segment(user: &UserId, segments: u32) -> u32 {
    let mut hash = user
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash % u64::from(segments.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short ids as well as long ones fill every segment, none more than twice its share.
    #[test]
    fn ids_short_and_long_spread_over_every_segment() {
        let formats: [fn(usize) -> String; 3] = [
            |i| i.to_string(),
            |i| format!("s{i:02}"),
            |i| format!("user-{i:08}"),
        ];
        for format in formats {
            let mut sizes = [0usize; 32];
            for i in 0..3200 {
                sizes[member_segment(&UserId::parse(&format(i)).unwrap(), 32) as usize] += 1;
            }
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(*min > 50 && *max < 200, "{}: {sizes:?}", format(0));
        }
    }
}
