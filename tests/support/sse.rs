//! A Server-Sent Events reader over real HTTP, as a browser's `EventSource` reads a stream:
//! events split at blank lines, `event`/`id`/`data`/`retry` fields, comments ignored.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// The `retry` the server asked for, if it did.
    pub retry: Option<u64>,
}

impl SseStream {
    /// Opens `url` with the user token as a query parameter (what `EventSource` must do) and
    /// `Last-Event-ID` if given; panics unless the answer is a 200 event stream.
    pub async fn open(url: &str, token: &str, last_event_id: Option<&str>) -> Self {
        // A JWT is URL-safe as it is.
        let mut request = reqwest::Client::new()
            .get(format!("{url}?token={token}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "the stream opens");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
            retry: None,
        }
    }

    /// The next event (heartbeat comments skipped), `None` if the stream ends or nothing comes
    /// within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Whether the server ends the stream within `wait` (events on the way are read past).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
            }
        }
    }

    /// Every event until the stream ends or is quiet for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(e) = self.next(quiet).await {
            events.push(e);
        }
        events
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let mut event = String::from("message");
        let mut id = None;
        let mut data = Vec::new();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "id" => id = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
        if data.is_empty() {
            return None;
        }
        Some(SseEvent {
            event,
            id,
            data: serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null),
        })
    }
}
