use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::api_key::{ApiKey, ApiKeyId};
use crate::domain::category::Category;
use crate::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use crate::domain::fanned_out_page::FannedOutPage;
use crate::domain::group::Group;
use crate::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark, NewInboxItem};
use crate::domain::notification::{Counts, Notification, Status};
use crate::domain::preferences::Preferences;
use crate::domain::push::{PushSubscription, PushSubscriptionId};
use crate::domain::suppression::{SuppressedAddress, Suppression};
use crate::domain::template::Template;
use crate::domain::user::User;
use crate::domain::webhook::Webhook;
use crate::domain::{
    CategoryId, Channel, GroupId, IdempotencyKey, NotificationId, TemplateId, UserId, WebhookId,
};
use crate::jobs::Segment;
use crate::ports::{
    ApiKeyStore, CategoryStore, DeliveryStore, GroupStore, IdempotencyRecord, InboxStore,
    InsertOutcome, NotificationStore, Page, PreferenceStore, PushSubscriptionStore, StoreError,
    SuppressionStore, TemplateStore, UserStore, WebhookStore, inbox_cursor, inbox_page,
};

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, User>,
    templates: HashMap<TemplateId, Template>,
    /// Members by segment.
    groups: BTreeMap<GroupId, (String, BTreeMap<u32, BTreeSet<UserId>>)>,
    /// 0 means 1.
    member_segments: u32,
    /// Segments of a split fanout recorded so far.
    fanned_segments: HashMap<NotificationId, BTreeSet<u32>>,
    idempotency: HashMap<String, IdempotencyRecord>,
    notifications: BTreeMap<NotificationId, Notification>,
    fanned_out: HashSet<NotificationId>,
    /// Fanned-out pages by notification and page key.
    pages: HashMap<(NotificationId, String), FannedOutPage>,
    /// Ordered by (notification, recipient, channel) so pages are stable.
    deliveries:
        BTreeMap<(NotificationId, String, crate::domain::Channel), (Delivery, Option<Timestamp>)>,
    /// By hash.
    api_keys: HashMap<String, ApiKey>,
    /// By address.
    suppressions: BTreeMap<String, Suppression>,
    categories: BTreeMap<CategoryId, Category>,
    preferences: HashMap<UserId, Preferences>,
    token_generations: HashMap<UserId, u64>,
    webhooks: BTreeMap<WebhookId, Webhook>,
    /// Each user's items by `seq`.
    inbox: HashMap<UserId, BTreeMap<u64, InboxItem>>,
    push_subscriptions: HashMap<UserId, Vec<PushSubscription>>,
}

#[derive(Default)]
pub struct MemoryStore(Mutex<Inner>);

impl MemoryStore {
    /// A store that splits memberships into `segments`, as DynamoDB's does (the simulated AWS
    /// run fans out a group by segments at once).
    pub fn with_member_segments(segments: u32) -> Self {
        let store = Self::default();
        store.0.lock().unwrap().member_segments = segments.max(1);
        store
    }
}

impl Inner {
    fn segment(&self, user: &UserId) -> u32 {
        crate::domain::group::member_segment(user, self.member_segments.max(1))
    }
}

/// The first `limit` of `members`, and whether more follow.
fn members_page<T: Clone>(mut members: impl Iterator<Item = T>, limit: usize) -> (Vec<T>, bool) {
    let items: Vec<T> = members.by_ref().take(limit).collect();
    let more = items.len() == limit && members.next().is_some();
    (items, more)
}

fn member_count(members: &BTreeMap<u32, BTreeSet<UserId>>) -> u64 {
    members.values().map(|m| m.len() as u64).sum()
}

fn page<T: Clone>(items: Vec<T>, limit: usize, offset: usize) -> Page<T> {
    let next = (items.len() > offset + limit).then(|| (offset + limit).to_string());
    Page {
        items: items.into_iter().skip(offset).take(limit).collect(),
        next_cursor: next,
    }
}

fn offset(cursor: Option<&str>) -> Result<usize, StoreError> {
    cursor.map_or(Ok(0), |c| c.parse().map_err(|_| StoreError::BadCursor))
}

fn key_of(k: &DeliveryKey) -> (NotificationId, String, crate::domain::Channel) {
    (k.notification_id.clone(), k.recipient.clone(), k.channel)
}

impl Inner {
    fn counts(&self, id: &NotificationId) -> Counts {
        let mut c = Counts::default();
        for ((nid, _, _), (d, _)) in self.deliveries.iter() {
            if nid != id {
                continue;
            }
            c.recipients += 1;
            c.add(d.status, 1);
        }
        c
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .users
            .insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        Ok(self.0.lock().unwrap().users.get(id).cloned())
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| inner.users.get(id).cloned())
            .collect())
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let segment = inner.segment(id);
        for (_, members) in inner.groups.values_mut() {
            if let Some(m) = members.get_mut(&segment) {
                m.remove(id);
            }
        }
        inner.preferences.remove(id);
        inner.inbox.remove(id);
        inner.push_subscriptions.remove(id);
        Ok(inner.users.remove(id).is_some())
    }

    async fn token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.token_generations.get(id).copied().unwrap_or(0))
    }

    async fn bump_token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let generation = inner.token_generations.entry(id.clone()).or_insert(0);
        *generation += 1;
        Ok(*generation)
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let entry = inner.groups.entry(id.clone()).or_default();
        entry.0 = name.to_owned();
        Ok(Group {
            id: id.clone(),
            name: name.to_owned(),
            member_count: member_count(&entry.1),
        })
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.groups.get(id).map(|(name, members)| Group {
            id: id.clone(),
            name: name.clone(),
            member_count: member_count(members),
        }))
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().groups.remove(id).is_some())
    }

    async fn purge_group(&self, _id: &GroupId, _max: usize) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let keyed: Vec<(u32, UserId)> = users
            .iter()
            .map(|u| (inner.segment(u), u.clone()))
            .collect();
        let Some((_, members)) = inner.groups.get_mut(id) else {
            return Ok(0);
        };
        Ok(keyed
            .into_iter()
            .filter(|(s, u)| members.entry(*s).or_default().insert(u.clone()))
            .count() as u64)
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let keyed: Vec<(u32, UserId)> = users
            .iter()
            .map(|u| (inner.segment(u), u.clone()))
            .collect();
        let Some((_, members)) = inner.groups.get_mut(id) else {
            return Ok(0);
        };
        Ok(keyed
            .iter()
            .filter(|(s, u)| members.get_mut(s).is_some_and(|m| m.remove(u)))
            .count() as u64)
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        let inner = self.0.lock().unwrap();
        // "segment:user", the last member of the page before.
        let after = cursor
            .map(|c| {
                let (segment, user) = c.split_once(':').ok_or(StoreError::BadCursor)?;
                let segment: u32 = segment.parse().map_err(|_| StoreError::BadCursor)?;
                let user = UserId::parse(user).map_err(|_| StoreError::BadCursor)?;
                Ok::<_, StoreError>((segment, user))
            })
            .transpose()?;
        let Some((_, members)) = inner.groups.get(id) else {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        };
        let from = after.as_ref().map_or(0, |(s, _)| *s);
        let all = members.range(from..).flat_map(|(s, m)| {
            let in_segment: Box<dyn Iterator<Item = &UserId>> = match &after {
                Some((first, user)) if first == s => Box::new(m.range::<UserId, _>((
                    std::ops::Bound::Excluded(user),
                    std::ops::Bound::Unbounded,
                ))),
                _ => Box::new(m.iter()),
            };
            in_segment.map(move |u| (*s, u.clone()))
        });
        let (items, more) = members_page(all, limit);
        let next_cursor = more
            .then(|| items.last().map(|(s, u)| format!("{s}:{u}")))
            .flatten();
        Ok(Page {
            items: items.into_iter().map(|(_, u)| u).collect(),
            next_cursor,
        })
    }

    fn member_segments(&self) -> u32 {
        self.0.lock().unwrap().member_segments.max(1)
    }

    async fn list_segment(
        &self,
        id: &GroupId,
        segment: u32,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let inner = self.0.lock().unwrap();
        let after = cursor
            .map(|c| UserId::parse(c).map_err(|_| StoreError::BadCursor))
            .transpose()?;
        let Some(members) = inner.groups.get(id).and_then(|(_, m)| m.get(&segment)) else {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        };
        let (items, more) = match &after {
            Some(a) => members_page(members.range((Excluded(a), Unbounded)).cloned(), limit),
            None => members_page(members.iter().cloned(), limit),
        };
        let next_cursor = more
            .then(|| items.last().map(|u| u.as_str().to_owned()))
            .flatten();
        Ok(Page { items, next_cursor })
    }
}

#[async_trait]
impl TemplateStore for MemoryStore {
    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap()
            .templates
            .insert(template.id.clone(), template.clone());
        Ok(())
    }

    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError> {
        Ok(self.0.lock().unwrap().templates.get(id).cloned())
    }

    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().templates.remove(id).is_some())
    }
}

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .idempotency
            .get(key.as_str())
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn insert_notification(
        &self,
        n: &Notification,
        idem: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut inner = self.0.lock().unwrap();
        if let Some(record) = idem {
            if let Some(existing) = inner
                .idempotency
                .get(&record.key)
                .filter(|r| r.expires_at > now)
            {
                return Ok(InsertOutcome::KeyTaken(existing.clone()));
            }
            inner.idempotency.insert(record.key.clone(), record.clone());
        }
        inner.notifications.insert(n.id.clone(), n.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn get_notification(
        &self,
        id: &NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        Ok(self.0.lock().unwrap().notifications.get(id).cloned())
    }

    async fn list_notifications(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Notification>, StoreError> {
        let inner = self.0.lock().unwrap();
        let items: Vec<_> = inner
            .notifications
            .values()
            .rev()
            .filter(|n| status.is_none_or(|s| n.status == s))
            .cloned()
            .collect();
        Ok(page(items, limit, offset(cursor)?))
    }

    async fn transition(
        &self,
        id: &NotificationId,
        from: &[Status],
        to: Status,
    ) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        match inner.notifications.get_mut(id) {
            Some(n) if from.contains(&n.status) => {
                n.status = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        match inner.notifications.get_mut(id) {
            Some(n) if matches!(n.status, Status::Failed | Status::PartiallyFailed) => {
                n.status = Status::Sending;
                inner.fanned_out.remove(id);
                inner.fanned_segments.remove(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        match inner.notifications.get_mut(id) {
            Some(n) if n.status == Status::Scheduled => {
                n.send_at = at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_fanned_out(
        &self,
        id: &NotificationId,
        segment: Option<Segment>,
    ) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        if let Some(segment) = segment {
            let done = inner.fanned_segments.entry(id.clone()).or_default();
            done.insert(segment.index);
            if done.len() < segment.of as usize {
                return Ok(());
            }
        }
        inner.fanned_out.insert(id.clone());
        Ok(())
    }

    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let counts = inner.counts(id);
        if !inner.fanned_out.contains(id) || counts.pending > 0 {
            return Ok(None);
        }
        match inner.notifications.get_mut(id) {
            Some(n) if n.status == Status::Sending => {
                n.status = Status::finished(&counts);
                Ok(Some(n.status))
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn fanned_out_page(
        &self,
        id: &NotificationId,
        page: &str,
        _all: &[crate::domain::Channel],
    ) -> Result<Option<FannedOutPage>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.pages.get(&(id.clone(), page.to_owned())).cloned())
    }

    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        record: &FannedOutPage,
        _all: &[crate::domain::Channel],
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let key = (id.clone(), page.to_owned());
        if inner.pages.contains_key(&key) {
            return Ok(false);
        }
        inner.pages.insert(key, record.clone());
        for d in deliveries {
            inner
                .deliveries
                .entry(key_of(&d.key))
                .or_insert_with(|| (d.clone(), None));
        }
        Ok(true)
    }

    async fn claim_delivery(
        &self,
        planned: &Delivery,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let Some((d, lease)) = inner.deliveries.get_mut(&key_of(&planned.key)) else {
            return Ok(Claim::Done);
        };
        if d.status != DeliveryStatus::Pending {
            return Ok(Claim::Done);
        }
        if lease.is_some_and(|l| l > now) {
            return Ok(Claim::Busy);
        }
        *lease = Some(lease_until);
        d.attempts += 1;
        Ok(Claim::Claimed {
            attempt: d.attempts,
        })
    }

    async fn record_outcome(&self, key: &DeliveryKey, outcome: &Outcome) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        if let Some((d, lease)) = inner.deliveries.get_mut(&key_of(key)) {
            *lease = None;
            match outcome {
                Outcome::Sent {
                    provider_message_id,
                    at,
                } => {
                    d.status = DeliveryStatus::Sent;
                    d.provider_message_id = Some(provider_message_id.clone());
                    d.sent_at = Some(*at);
                    d.error = None;
                }
                Outcome::Failed { error } => {
                    d.status = DeliveryStatus::Failed;
                    d.error = Some(error.clone());
                }
                Outcome::Skipped { reason } => {
                    d.status = DeliveryStatus::Skipped;
                    d.error = Some(reason.clone());
                }
                Outcome::Retry { error } => d.error = Some(error.clone()),
                Outcome::Deferred { error } => {
                    d.error = Some(error.clone());
                    d.attempts = d.attempts.saturating_sub(1);
                }
            }
        }
        Ok(())
    }

    async fn record_feedback(
        &self,
        key: &DeliveryKey,
        provider_message_id: &str,
        to: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        match inner.deliveries.get_mut(&key_of(key)) {
            Some((d, _))
                if d.status.may_become(to)
                    && d.provider_message_id.as_deref() == Some(provider_message_id) =>
            {
                d.status = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn reopen_failed(&self, key: &DeliveryKey) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        match inner.deliveries.get_mut(&key_of(key)) {
            Some((d, lease)) if d.status == DeliveryStatus::Failed => {
                d.status = DeliveryStatus::Pending;
                d.attempts = 0;
                *lease = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let inner = self.0.lock().unwrap();
        let items: Vec<_> = inner
            .deliveries
            .iter()
            .filter(|((nid, _, _), _)| nid == id)
            .map(|(_, (d, _))| d.clone())
            .collect();
        Ok(page(items, limit, offset(cursor)?))
    }

    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError> {
        Ok(self.0.lock().unwrap().counts(id))
    }
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        inner.api_keys.insert(key.hash.clone(), key.clone());
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.0.lock().unwrap().api_keys.get(hash).cloned())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = self.0.lock().unwrap().api_keys.values().cloned().collect();
        keys.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(keys)
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let before = inner.api_keys.len();
        inner.api_keys.retain(|_, k| &k.id != id);
        Ok(inner.api_keys.len() < before)
    }

    async fn touch_api_key(&self, hash: &str, at: Timestamp) -> Result<(), StoreError> {
        if let Some(key) = self.0.lock().unwrap().api_keys.get_mut(hash) {
            key.last_used_at = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl SuppressionStore for MemoryStore {
    async fn put_suppression(&self, s: &Suppression) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        inner
            .suppressions
            .insert(s.address.as_str().to_owned(), s.clone());
        Ok(())
    }

    async fn get_suppression(
        &self,
        address: &SuppressedAddress,
    ) -> Result<Option<Suppression>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .suppressions
            .get(address.as_str())
            .cloned())
    }

    async fn delete_suppression(&self, address: &SuppressedAddress) -> Result<bool, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .suppressions
            .remove(address.as_str())
            .is_some())
    }

    async fn find_suppressions(
        &self,
        addresses: &[SuppressedAddress],
    ) -> Result<Vec<Suppression>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(addresses
            .iter()
            .filter_map(|a| inner.suppressions.get(a.as_str()).cloned())
            .collect())
    }

    async fn list_suppressions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Suppression>, StoreError> {
        let items: Vec<Suppression> = self
            .0
            .lock()
            .unwrap()
            .suppressions
            .values()
            .cloned()
            .collect();
        Ok(page(items, limit, offset(cursor)?))
    }
}

#[async_trait]
impl CategoryStore for MemoryStore {
    async fn put_category(&self, category: &Category) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        inner
            .categories
            .insert(category.id.clone(), category.clone());
        Ok(())
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Option<Category>, StoreError> {
        Ok(self.0.lock().unwrap().categories.get(id).cloned())
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().categories.remove(id).is_some())
    }
}

#[async_trait]
impl PreferenceStore for MemoryStore {
    async fn get_preferences(&self, user: &UserId) -> Result<Preferences, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .preferences
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        inner.preferences.insert(user.clone(), preferences.clone());
        Ok(())
    }

    async fn set_preference(
        &self,
        user: &UserId,
        category: &CategoryId,
        channel: Channel,
        on: bool,
    ) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let before = inner
            .preferences
            .entry(user.clone())
            .or_default()
            .categories
            .entry(category.clone())
            .or_default()
            .insert(channel, on);
        Ok(before.unwrap_or(true) != on)
    }

    async fn find_opt_outs(
        &self,
        category: &CategoryId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Channel)>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(users
            .iter()
            .filter_map(|u| Some((u, inner.preferences.get(u)?)))
            .flat_map(|(u, p)| {
                Channel::ALL
                    .into_iter()
                    .filter(|&c| !p.allows(category, c))
                    .map(|c| (u.clone(), c))
            })
            .collect())
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        inner.webhooks.insert(webhook.id.clone(), webhook.clone());
        Ok(())
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Ok(self.0.lock().unwrap().webhooks.get(id).cloned())
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(self.0.lock().unwrap().webhooks.values().cloned().collect())
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().webhooks.remove(id).is_some())
    }
}

#[async_trait]
impl InboxStore for MemoryStore {
    async fn add_inbox_item(&self, item: &NewInboxItem) -> Result<InboxItem, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let items = inner.inbox.entry(item.user_id.clone()).or_default();
        if let Some(existing) = items
            .values()
            .find(|i| i.item.notification_id == item.notification_id)
        {
            return Ok(existing.clone());
        }
        let seq = items.keys().next_back().map_or(1, |s| s + 1);
        let added = InboxItem::new(item.clone(), seq);
        items.insert(seq, added.clone());
        Ok(added)
    }

    async fn list_inbox(
        &self,
        user: &UserId,
        filter: &InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InboxItem>, StoreError> {
        let before = inbox_cursor(cursor)?.unwrap_or(u64::MAX);
        let inner = self.0.lock().unwrap();
        let items: Vec<InboxItem> = inner
            .inbox
            .get(user)
            .into_iter()
            .flat_map(|items| items.range(..before).rev())
            .map(|(_, i)| i)
            .filter(|i| filter.admits(i))
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(inbox_page(items, limit))
    }

    async fn inbox_since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(inner
            .inbox
            .get(user)
            .into_iter()
            .flat_map(|items| items.range(after.saturating_add(1)..))
            .take(limit)
            .map(|(_, i)| i.clone())
            .collect())
    }

    async fn inbox_counts(&self, user: &UserId) -> Result<InboxCounts, StoreError> {
        let inner = self.0.lock().unwrap();
        let mut counts = InboxCounts::default();
        for item in inner.inbox.get(user).into_iter().flat_map(|i| i.values()) {
            counts.unread += u64::from(item.is_unread());
            counts.unseen += u64::from(item.is_unseen());
            counts.last_seq = item.seq;
        }
        Ok(counts)
    }

    async fn mark_inbox_item(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<Option<InboxItem>, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let Some(found) = inner
            .inbox
            .get_mut(user)
            .and_then(|items| items.values_mut().find(|i| i.item.notification_id == *item))
        else {
            return Ok(None);
        };
        *found = found.marked(mark, at).0;
        Ok(Some(found.clone()))
    }

    async fn mark_all_inbox(
        &self,
        user: &UserId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let mut changed = 0;
        for item in inner
            .inbox
            .get_mut(user)
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            if item.archived_at.is_some() {
                continue;
            }
            let (next, did) = item.marked(mark, at);
            if did {
                *item = next;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[async_trait]
impl PushSubscriptionStore for MemoryStore {
    async fn put_push_subscription(&self, s: &PushSubscription) -> Result<(), StoreError> {
        let mut inner = self.0.lock().unwrap();
        let subs = inner
            .push_subscriptions
            .entry(s.user_id.clone())
            .or_default();
        match subs.iter_mut().find(|x| x.id == s.id) {
            Some(existing) => *existing = s.clone(),
            None => subs.push(s.clone()),
        }
        Ok(())
    }

    async fn list_push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        let inner = self.0.lock().unwrap();
        Ok(inner
            .push_subscriptions
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn delete_push_subscription(
        &self,
        user: &UserId,
        id: &PushSubscriptionId,
    ) -> Result<bool, StoreError> {
        let mut inner = self.0.lock().unwrap();
        let Some(subs) = inner.push_subscriptions.get_mut(user) else {
            return Ok(false);
        };
        let before = subs.len();
        subs.retain(|s| &s.id != id);
        Ok(subs.len() < before)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn meets_the_store_contract() {
        crate::contract::run_all(&super::MemoryStore::default()).await;
    }
}
