//! A page of a group send as the fanout that counted it saw it.

use super::{Channel, ParseError, UserId};

/// What a fanout recorded of one page of a group send, together with the page's counts: its
/// members, the channels each was to be sent on (the others were skipped), and where the next
/// page starts.
///
/// A fanout run again for a page (its invocation failed or was killed after recording it) works
/// from this record, not from the group as it is by then. Read afresh, a page could hold members
/// added since (dispatched, never counted) and miss members removed since (counted, never
/// dispatched: the send would never finish), and the next page would start elsewhere, so that
/// the pages after it are counted again under other keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FannedOutPage {
    pub members: Vec<PageMember>,
    pub next_cursor: Option<String>,
}

/// A member of a recorded page and the channels it was to be sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMember {
    pub id: UserId,
    pub pending: Vec<Channel>,
}

impl FannedOutPage {
    /// The members as stored: a line each, the id alone when every channel of the send (`all`)
    /// is pending, the usual case, otherwise the id, a tab and the pending channels (possibly
    /// none) separated by commas. Ids hold none of these characters. About 10 bytes a member
    /// for short ids: a page of 1,000 is a 10 KB write, once per page.
    pub fn encode_members(&self, all: &[Channel]) -> String {
        let mut out = String::with_capacity(self.members.len() * 16);
        for m in &self.members {
            out.push_str(m.id.as_str());
            if m.pending != all {
                out.push('\t');
                let names: Vec<&str> = m.pending.iter().map(|c| c.as_str()).collect();
                out.push_str(&names.join(","));
            }
            out.push('\n');
        }
        out
    }

    /// The members from `encode_members`, for a send on the channels `all`.
    pub fn decode_members(raw: &str, all: &[Channel]) -> Result<Vec<PageMember>, ParseError> {
        raw.lines()
            .map(|line| {
                let (id, pending) = match line.split_once('\t') {
                    None => (line, all.to_vec()),
                    Some((id, "")) => (id, Vec::new()),
                    Some((id, channels)) => (
                        id,
                        channels
                            .split(',')
                            .map(Channel::parse)
                            .collect::<Result<_, _>>()?,
                    ),
                };
                Ok(PageMember {
                    id: UserId::parse(id)?,
                    pending,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, pending: &[Channel]) -> PageMember {
        PageMember {
            id: UserId::parse(id).unwrap(),
            pending: pending.to_vec(),
        }
    }

    #[test]
    fn members_come_back_as_recorded_with_all_some_or_none_of_the_channels() {
        let all = [Channel::Email, Channel::Sms];
        let page = FannedOutPage {
            members: vec![
                member("u1", &all),
                member("user:2@example.com", &[Channel::Sms]),
                member("u-3", &[]),
                member("u_4", &all),
            ],
            next_cursor: Some("abc".into()),
        };
        let raw = page.encode_members(&all);
        assert_eq!(raw, "u1\nuser:2@example.com\tsms\nu-3\t\nu_4\n");
        assert_eq!(
            FannedOutPage::decode_members(&raw, &all).unwrap(),
            page.members
        );
        assert_eq!(FannedOutPage::decode_members("", &all).unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let all = [Channel::Email];
        assert!(FannedOutPage::decode_members("u1\tfax\n", &all).is_err());
        assert!(FannedOutPage::decode_members("bad id\n", &all).is_err());
    }
}
