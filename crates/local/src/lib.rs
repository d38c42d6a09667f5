//! Adapters that run the core on one machine, on embedded storage (`notifyd`).

pub mod db;
pub mod email;
pub mod outbox;
pub mod queue;
pub mod scheduler;
pub mod sms;
pub mod store;
pub mod worker;

pub use db::Db;
