use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::NotificationId;
use crate::ports::{Scheduler, SchedulerError};

#[derive(Default)]
pub struct MemoryScheduler {
    pub schedules: Mutex<HashMap<NotificationId, Timestamp>>,
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError> {
        self.schedules.lock().unwrap().insert(id.clone(), at);
        Ok(())
    }

    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError> {
        self.schedules.lock().unwrap().remove(id);
        Ok(())
    }
}
