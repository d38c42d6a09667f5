//! Reading back what `EmlOutbox` and `JsonlOutbox` wrote, for the console.

use std::path::PathBuf;

use async_trait::async_trait;
use notify_core::ports::{BoxError, Outbox, OutboxEmail, OutboxSms};

/// The outbox folder's emails (`<dir>/*.eml`) and SMS lines; `None` where that channel goes to
/// a real provider instead.
pub struct OutboxReader {
    pub email_dir: Option<PathBuf>,
    pub sms_file: Option<PathBuf>,
}

#[async_trait]
impl Outbox for OutboxReader {
    async fn emails(&self, limit: usize) -> Result<Vec<OutboxEmail>, BoxError> {
        let Some(dir) = self.email_dir.clone() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // `.name.tmp` files are emails still being written.
                let Some(id) = name.strip_suffix(".eml") else {
                    continue;
                };
                files.push((entry.metadata()?.modified()?, id.to_owned()));
            }
            files.sort_unstable_by(|a, b| b.cmp(a));
            files
                .into_iter()
                .take(limit)
                .filter_map(|(_, id)| read_email(&dir, &id).transpose())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
    }

    async fn email(&self, id: &str) -> Result<Option<OutboxEmail>, BoxError> {
        let Some(dir) = self.email_dir.clone() else {
            return Ok(None);
        };
        // The ids are the file names `EmlOutbox` makes: nothing else can name a file.
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            || id.starts_with('.')
        {
            return Ok(None);
        }
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || read_email(&dir, &id)).await?
    }

    async fn sms(&self, limit: usize) -> Result<Vec<OutboxSms>, BoxError> {
        let Some(path) = &self.sms_file else {
            return Ok(Vec::new());
        };
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .rev()
            .filter(|line| !line.trim().is_empty())
            .take(limit)
            .map(|line| serde_json::from_str(line).map_err(BoxError::from))
            .collect()
    }
}

/// The email `<dir>/<id>.eml`, if it is there (it may have been removed since it was listed).
fn read_email(dir: &std::path::Path, id: &str) -> Result<Option<OutboxEmail>, BoxError> {
    let path = dir.join(format!("{id}.eml"));
    let written_at = match std::fs::metadata(&path) {
        Ok(meta) => meta.modified()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(OutboxEmail {
        id: id.to_owned(),
        written_at: jiff::Timestamp::try_from(written_at)?,
        raw,
    }))
}
