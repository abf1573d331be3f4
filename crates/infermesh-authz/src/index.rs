//! Which rules a request must be checked against. Each rule is filed under one
//! request attribute it *requires* — every one of its `from` sources (or every one of
//! its `to` operations) lists exact or `prefix*` values for it — so a request whose
//! value matches none of them cannot match the rule: the field is `No`, and `No` AND
//! anything is `No`, whatever else is unknown. Only attributes that are always known
//! and single-valued are used (never versions, labels, signatures or headers, which
//! can fail closed), so skipping a rule never changes a decision. Rules with no such
//! attribute are `generic` and checked for every request.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::pattern::Pat;
use crate::rule::{CompiledRule, Derived};

/// The attributes rules are filed under, most selective first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Model,
    RequestPrincipal,
    Principal,
    Namespace,
    Path,
    Method,
    Api,
}

const KEYS: [Key; 7] = [
    Key::Model,
    Key::RequestPrincipal,
    Key::Principal,
    Key::Namespace,
    Key::Path,
    Key::Method,
    Key::Api,
];

impl Key {
    /// The request's value, exactly as the rule's field sees it.
    fn value<'a>(self, d: &Derived<'a>) -> Option<&'a str> {
        let r = d.req;
        match self {
            Key::Model => r.model.as_ref().map(|m| m.name),
            Key::RequestPrincipal => r.request_principal,
            Key::Principal => r.peer_principal,
            Key::Namespace => d.namespace,
            Key::Path => Some(r.path),
            Key::Method => Some(r.method),
            Key::Api => r.model.as_ref().map(|m| m.api.as_str()),
        }
    }
}

/// The rules filed under one attribute, by exact value and by prefix.
#[derive(Default)]
struct KeyIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: HashMap<Box<str>, Vec<u32>>,
    /// The distinct prefix lengths (bytes), ascending.
    lens: Vec<usize>,
}

impl KeyIndex {
    fn insert(&mut self, pats: &[&Pat], at: u32) {
        for p in pats {
            let (map, s) = match p {
                Pat::Exact(s) => (&mut self.exact, s),
                Pat::Prefix(s) => {
                    if let Err(i) = self.lens.binary_search(&s.len()) {
                        self.lens.insert(i, s.len());
                    }
                    (&mut self.prefix, s)
                }
                // `indexable` admits nothing else.
                Pat::Suffix(_) | Pat::Present => continue,
            };
            let list = map.entry(s.clone()).or_default();
            if list.last() != Some(&at) {
                list.push(at);
            }
        }
    }

    /// Every list of rules `v` can match.
    fn hits<'s>(&'s self, v: &str, mut found: impl FnMut(&'s [u32])) {
        if let Some(l) = self.exact.get(v) {
            found(l);
        }
        for &n in &self.lens {
            if n > v.len() {
                break;
            }
            if let Some(l) = v.get(..n).and_then(|p| self.prefix.get(p)) {
                found(l);
            }
        }
    }
}

/// The rules of one action (indexes into `Authorizer::entries`, each in file order).
#[derive(Default)]
pub(crate) struct ActionIndex {
    keys: Vec<(Key, KeyIndex)>,
    generic: Vec<u32>,
}

/// Exact values and non-empty prefixes only: `*suffix` and `*` cannot be looked up.
fn indexable(pats: &[&Pat]) -> bool {
    !pats.is_empty()
        && pats.iter().all(|p| match p {
            Pat::Exact(_) => true,
            Pat::Prefix(s) => !s.is_empty(),
            Pat::Suffix(_) | Pat::Present => false,
        })
}

impl ActionIndex {
    pub fn add(&mut self, rule: &CompiledRule, at: u32) {
        for key in KEYS {
            let Some(pats) = rule.required(key) else {
                continue;
            };
            if !indexable(&pats) {
                continue;
            }
            let i = match self.keys.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    self.keys.push((key, KeyIndex::default()));
                    self.keys.len() - 1
                }
            };
            self.keys[i].1.insert(&pats, at);
            return;
        }
        self.generic.push(at);
    }

    /// The rules that can match `d`, in file order.
    pub fn candidates(&self, d: &Derived<'_>) -> Candidates<'_> {
        let mut one: Option<&[u32]> = None;
        let mut many: Vec<u32> = Vec::new();
        for (key, index) in &self.keys {
            let Some(v) = key.value(d) else {
                continue;
            };
            index.hits(v, |l| match one {
                None if many.is_empty() => one = Some(l),
                _ => {
                    many.extend(one.take().into_iter().flatten());
                    many.extend_from_slice(l);
                }
            });
        }
        let specific = if many.is_empty() {
            Cow::Borrowed(one.unwrap_or(&[]))
        } else {
            many.sort_unstable();
            many.dedup();
            Cow::Owned(many)
        };
        Candidates {
            specific,
            generic: &self.generic,
            i: 0,
            j: 0,
        }
    }
}

/// The union of two sorted lists, in order.
pub(crate) struct Candidates<'s> {
    specific: Cow<'s, [u32]>,
    generic: &'s [u32],
    i: usize,
    j: usize,
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (a, b) = (self.specific.get(self.i), self.generic.get(self.j));
        match (a, b) {
            (Some(&a), Some(&b)) if a < b => {
                self.i += 1;
                Some(a)
            }
            (_, Some(&b)) => {
                self.j += 1;
                Some(b)
            }
            (Some(&a), None) => {
                self.i += 1;
                Some(a)
            }
            (None, None) => None,
        }
    }
}
