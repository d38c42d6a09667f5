//! EventBridge Scheduler's part, which moto stores but never fires. A one-shot `at()` schedule
//! fires "with 60 second precision", so here at the earliest moment that allows: the first
//! second of the minute it names (before the second it names, and at once for a schedule whose
//! minute has come); firing puts the target's input on the target queue and deletes the
//! schedule (the adapter's `ActionAfterCompletion: DELETE`). A `rate()` schedule fires every
//! period from when it was first seen. Schedules with other expressions are left alone.

use std::collections::HashMap;
use std::time::Duration;

use aws_types::SdkConfig;
use jiff::{SignedDuration, Timestamp};

/// A schedule fire: its name, the time its expression names (for `at()`), and when it fired.
#[derive(Debug, Clone)]
pub struct Fire {
    pub name: String,
    pub named: Option<Timestamp>,
    pub fired_at: Timestamp,
}

/// The time an `at(yyyy-mm-ddThh:mm:ss)` expression names, in UTC.
pub fn at_time(expression: &str) -> Option<Timestamp> {
    let inner = expression.strip_prefix("at(")?.strip_suffix(')')?;
    let civil: jiff::civil::DateTime = inner.parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The period of a `rate(n unit)` expression.
pub fn rate_period(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * seconds))
}

pub struct Scheduler {
    client: aws_sdk_scheduler::Client,
    sqs: aws_sdk_sqs::Client,
    groups: Vec<String>,
    /// Queue ARN → URL: the targets it can reach.
    queues: HashMap<String, String>,
    /// When each `rate()` schedule fires next.
    next_rate_fire: HashMap<(String, String), Timestamp>,
}

impl Scheduler {
    /// Fires the schedules of `groups` whose targets are among `queues`, through `sdk` (the
    /// emulator, straight: Scheduler's own calls are not the functions').
    pub fn new(sdk: &SdkConfig, groups: Vec<String>, queues: HashMap<String, String>) -> Self {
        Self {
            client: aws_sdk_scheduler::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            groups,
            queues,
            next_rate_fire: HashMap::new(),
        }
    }

    /// Fires every schedule that is due now; what fired.
    pub async fn fire_due(&mut self) -> Vec<Fire> {
        let mut fired = Vec::new();
        for group in self.groups.clone() {
            let Ok(list) = self.client.list_schedules().group_name(&group).send().await else {
                continue;
            };
            for summary in list.schedules() {
                let Some(name) = summary.name() else { continue };
                if let Some(fire) = self.fire_if_due(&group, name).await {
                    fired.push(fire);
                }
            }
        }
        fired
    }

    async fn fire_if_due(&mut self, group: &str, name: &str) -> Option<Fire> {
        let schedule = self
            .client
            .get_schedule()
            .name(name)
            .group_name(group)
            .send()
            .await
            .ok()?;
        if schedule.state().is_some_and(|s| s.as_str() == "DISABLED") {
            return None;
        }
        let expression = schedule.schedule_expression()?;
        let now = Timestamp::now();
        let named = at_time(expression);
        let key = (group.to_owned(), name.to_owned());
        match (named, rate_period(expression)) {
            (Some(named), _) => {
                let earliest =
                    Timestamp::from_second(named.as_second().div_euclid(60) * 60).ok()?;
                if now < earliest {
                    return None;
                }
            }
            (None, Some(period)) => {
                let period = SignedDuration::try_from(period).ok()?;
                let next = *self
                    .next_rate_fire
                    .entry(key.clone())
                    .or_insert(now + period);
                if now < next {
                    return None;
                }
                self.next_rate_fire.insert(key, now + period);
            }
            (None, None) => return None,
        }
        let target = schedule.target()?;
        let url = self.queues.get(target.arn())?;
        // Scheduler retries a target it cannot reach: the schedule stays for the next round.
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(target.input().unwrap_or_default())
            .send()
            .await
            .ok()?;
        if named.is_some() {
            let _ = self
                .client
                .delete_schedule()
                .name(name)
                .group_name(group)
                .send()
                .await;
        }
        Some(Fire {
            name: name.to_owned(),
            named,
            fired_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse() {
        assert_eq!(
            at_time("at(2026-11-23T08:30:15)"),
            Some("2026-11-23T08:30:15Z".parse().unwrap())
        );
        assert_eq!(at_time("at(nonsense)"), None);
        assert_eq!(
            rate_period("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(rate_period("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate_period("rate(0 minutes)"), None);
        assert_eq!(rate_period("cron(0 * * * ? *)"), None);
    }
}
