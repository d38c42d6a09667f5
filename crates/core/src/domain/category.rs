//! A category says what kind of message a notification is (`newsletter`, `security`), so that
//! a user can turn off one kind without the others.

use serde::{Deserialize, Serialize};

use super::CategoryId;

/// A category's settings. A notification may name a category that was never defined: it is
/// then an ordinary one, which users can unsubscribe from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: CategoryId,
    /// Sent whatever the user's preferences say (password resets, security alerts): no
    /// unsubscribe link, and opt-outs do not apply. Suppressions still do, since a bounced
    /// address cannot receive anything.
    pub transactional: bool,
    pub description: Option<String>,
}

impl Category {
    /// A category nobody defined.
    pub fn ordinary(id: CategoryId) -> Self {
        Self {
            id,
            transactional: false,
            description: None,
        }
    }
}
