use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::jobs::{Chore, DispatchJob, FanoutJob, WebhookJob};
use crate::ports::{QueueError, Queues};

#[derive(Default)]
pub struct MemoryQueues {
    pub fanout: Mutex<Vec<FanoutJob>>,
    /// Fanout jobs put on the queue with a delay, with it.
    pub delayed_fanout: Mutex<Vec<(FanoutJob, Duration)>>,
    pub chores: Mutex<Vec<Chore>>,
    pub dispatch: Mutex<Vec<DispatchJob>>,
    /// Webhook jobs, with the delay they were put on the queue with.
    pub webhooks: Mutex<Vec<(WebhookJob, Duration)>>,
}

impl MemoryQueues {
    pub fn take_fanout(&self) -> Vec<FanoutJob> {
        std::mem::take(&mut self.fanout.lock().unwrap())
    }

    pub fn take_dispatch(&self) -> Vec<DispatchJob> {
        std::mem::take(&mut self.dispatch.lock().unwrap())
    }

    pub fn take_webhooks(&self) -> Vec<(WebhookJob, Duration)> {
        std::mem::take(&mut self.webhooks.lock().unwrap())
    }
}

#[async_trait]
impl Queues for MemoryQueues {
    async fn send_fanout(&self, job: &FanoutJob) -> Result<(), QueueError> {
        self.fanout.lock().unwrap().push(job.clone());
        Ok(())
    }

    async fn send_fanout_after(&self, job: &FanoutJob, delay: Duration) -> Result<(), QueueError> {
        self.delayed_fanout
            .lock()
            .unwrap()
            .push((job.clone(), delay));
        Ok(())
    }

    async fn send_chore(&self, chore: &Chore) -> Result<(), QueueError> {
        self.chores.lock().unwrap().push(chore.clone());
        Ok(())
    }

    async fn send_dispatch(&self, jobs: &[DispatchJob]) -> Result<(), QueueError> {
        self.dispatch.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }

    async fn send_webhooks(&self, jobs: &[WebhookJob], delay: Duration) -> Result<(), QueueError> {
        self.webhooks
            .lock()
            .unwrap()
            .extend(jobs.iter().map(|j| (j.clone(), delay)));
        Ok(())
    }
}
