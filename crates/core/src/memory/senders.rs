use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{EmailSender, OutgoingEmail, OutgoingSms, SendError, SmsSender, WebhookPoster};

/// Records what it sends; `fail_next` queues errors to answer first.
#[derive(Default)]
pub struct RecordingEmail {
    pub sent: Mutex<Vec<OutgoingEmail>>,
    pub fail_next: Mutex<VecDeque<SendError>>,
}

#[async_trait]
impl EmailSender for RecordingEmail {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        if let Some(e) = self.fail_next.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.sent.lock().unwrap().push(email.clone());
        Ok(email.message_id.clone())
    }
}

#[derive(Default)]
pub struct RecordingSms {
    pub sent: Mutex<Vec<OutgoingSms>>,
}

#[async_trait]
impl SmsSender for RecordingSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<String, SendError> {
        self.sent.lock().unwrap().push(sms.clone());
        Ok(sms.message_id.clone())
    }
}

/// A webhook post as recorded: the URL, the headers, the body.
pub type RecordedPost = (String, Vec<(String, String)>, String);

/// Records what it posts; `fail_next` queues failures to answer first.
#[derive(Default)]
pub struct RecordingPoster {
    pub posted: Mutex<Vec<RecordedPost>>,
    pub fail_next: Mutex<VecDeque<String>>,
}

#[async_trait]
impl WebhookPoster for RecordingPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<(), String> {
        if let Some(e) = self.fail_next.lock().unwrap().pop_front() {
            return Err(e);
        }
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.posted
            .lock()
            .unwrap()
            .push((url.to_owned(), headers, body));
        Ok(())
    }
}
