//! The store on SQLite (the schema is in `db.rs`), one file per aggregate.

mod api_keys;
mod deliveries;
mod groups;
mod inbox;
mod notifications;
mod preferences;
mod push_subscriptions;
mod retention;
mod row;
mod suppressions;
mod templates;
mod users;
mod webhooks;

use crate::db::Db;

pub use retention::Pruned;

pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("t.db"), crate::db::Durability::Full).unwrap();
        notify_core::contract::run_all(&super::SqliteStore::new(db)).await;
    }
}
