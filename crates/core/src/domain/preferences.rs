//! What a user wants to receive: per category and channel, on or off. Everything is on until
//! the user (or the backend for them) turns it off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CategoryId, Channel};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub categories: BTreeMap<CategoryId, BTreeMap<Channel, bool>>,
}

impl Preferences {
    pub fn allows(&self, category: &CategoryId, channel: Channel) -> bool {
        self.categories
            .get(category)
            .and_then(|channels| channels.get(&channel))
            .copied()
            .unwrap_or(true)
    }

    /// Each (category, channel, on) the preferences hold, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&CategoryId, Channel, bool)> {
        self.categories.iter().flat_map(|(category, channels)| {
            channels
                .iter()
                .map(move |(&channel, &on)| (category, channel, on))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_on_until_turned_off() {
        let news = CategoryId::parse("newsletter").unwrap();
        let mut p = Preferences::default();
        assert!(p.allows(&news, Channel::Email));
        p.categories
            .entry(news.clone())
            .or_default()
            .insert(Channel::Email, false);
        assert!(!p.allows(&news, Channel::Email));
        assert!(p.allows(&news, Channel::Sms));
        assert!(p.allows(&CategoryId::parse("security").unwrap(), Channel::Email));
    }
}
