//! The open inbox streams of this process, counted: at most a few per user (a new one closes
//! that user's oldest, which is what a user opening one more tab expects) and a ceiling for
//! all of them, past which a new stream is refused. Without it one user token held 100
//! streams open, each a connection and a task for ever (issue 32).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::domain::UserId;

pub const STREAMS_PER_USER: usize = 5;
pub const STREAMS_IN_ALL: usize = 10_000;

#[derive(Default)]
struct Open {
    next_id: u64,
    in_all: usize,
    by_user: HashMap<UserId, VecDeque<(u64, oneshot::Sender<()>)>>,
}

#[derive(Clone)]
pub struct StreamSlots {
    open: Arc<Mutex<Open>>,
    per_user: usize,
    in_all: usize,
}

/// Every stream slot of the process is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyStreams;

/// One open stream's slot: given back when dropped (the stream ended or its client left).
pub struct StreamSlot {
    open: Arc<Mutex<Open>>,
    user: UserId,
    id: u64,
    /// Resolves when a newer stream of the same user took this one's place.
    pub evicted: oneshot::Receiver<()>,
}

impl StreamSlots {
    pub fn new(per_user: usize, in_all: usize) -> Self {
        Self {
            open: Arc::default(),
            per_user: per_user.max(1),
            in_all: in_all.max(1),
        }
    }

    /// A slot for a new stream of `user`, closing the user's oldest stream if they have
    /// `per_user` open already.
    pub fn open(&self, user: &UserId) -> Result<StreamSlot, TooManyStreams> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.by_user.get(user).map_or(0, VecDeque::len);
        if mine < self.per_user && open.in_all >= self.in_all {
            return Err(TooManyStreams);
        }
        let id = open.next_id;
        open.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        let streams = open.by_user.entry(user.clone()).or_default();
        if streams.len() >= self.per_user
            && let Some((_, oldest)) = streams.pop_front()
        {
            // The oldest stream ends; its slot passes to this one.
            let _ = oldest.send(());
        } else {
            open.in_all += 1;
        }
        open.by_user
            .get_mut(user)
            .expect("made above")
            .push_back((id, evict));
        Ok(StreamSlot {
            open: self.open.clone(),
            user: user.clone(),
            id,
            evicted,
        })
    }

    /// Open streams in all.
    pub fn count(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_all
    }
}

impl Default for StreamSlots {
    fn default() -> Self {
        Self::new(STREAMS_PER_USER, STREAMS_IN_ALL)
    }
}

impl StreamSlot {
    /// Resolves when a newer stream of the same user took this one's place; the slot is held
    /// until then (and given back when the future is dropped).
    pub async fn closed(mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(streams) = open.by_user.get_mut(&self.user) else {
            return;
        };
        let before = streams.len();
        streams.retain(|(id, _)| *id != self.id);
        let removed = before != streams.len();
        if streams.is_empty() {
            open.by_user.remove(&self.user);
        }
        // An evicted stream's slot was handed on already.
        if removed {
            open.in_all -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn a_users_sixth_stream_closes_their_oldest_and_slots_come_back_on_drop() {
        let slots = StreamSlots::new(5, 100);
        let ada = user("ada");
        let mut open: Vec<StreamSlot> = (0..5).map(|_| slots.open(&ada).unwrap()).collect();
        assert_eq!(slots.count(), 5);
        let sixth = slots.open(&ada).unwrap();
        assert_eq!(slots.count(), 5);
        assert!(
            open[0].evicted.try_recv().is_ok(),
            "the oldest is told to close"
        );
        for later in &mut open[1..] {
            assert!(later.evicted.try_recv().is_err());
        }
        drop(open.remove(0));
        assert_eq!(
            slots.count(),
            5,
            "an evicted slot was handed on, not given back twice"
        );
        drop(sixth);
        drop(open);
        assert_eq!(slots.count(), 0);
    }

    #[test]
    fn past_the_ceiling_a_new_user_is_refused_but_a_user_at_their_cap_still_rotates() {
        let slots = StreamSlots::new(2, 3);
        let (ada, bob, cy) = (user("ada"), user("bob"), user("cy"));
        let _a1 = slots.open(&ada).unwrap();
        let _a2 = slots.open(&ada).unwrap();
        let _b1 = slots.open(&bob).unwrap();
        assert_eq!(slots.open(&cy).err(), Some(TooManyStreams));
        assert_eq!(slots.open(&bob).err(), Some(TooManyStreams));
        let _a3 = slots.open(&ada).expect("rotating takes no new slot");
        assert_eq!(slots.count(), 3);
    }
}
