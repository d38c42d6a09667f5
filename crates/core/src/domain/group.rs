use serde::{Deserialize, Serialize};

use crate::domain::GroupId;

/// A subscription list. Members are resolved when a send to the group fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub member_count: u64,
}

/// At most this many ids in one `POST /v1/groups/{id}/members`.
pub const MAX_MEMBER_CHANGES: usize = 1000;
