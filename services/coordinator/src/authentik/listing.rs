//! Checks that a paged Authentik listing arrived whole.
//!
//! A listing that is silently short (an empty page while `next` says there
//! is more, `next = 0` before `count` items, a proxy or timeout cutting a
//! body, rows shifting between pages) would look like people left their
//! groups, and the run would revoke their access. So every page is checked
//! against the envelope Authentik always sends (`authentik/api/pagination.py`:
//! `next`, `previous`, `count`, `current`, `total_pages`, `start_index`,
//! `end_index`), and the listing must end with exactly `count` distinct
//! objects. Anything else is an Authentik error: the run stops before any
//! change and is retried.

use std::collections::HashSet;

use super::model::{Group, Page, User, normalize_uuid};
use crate::error::{Error, Result};

/// What makes two listed objects the same object.
pub trait Keyed {
    fn key(&self) -> String;
}

impl Keyed for User {
    fn key(&self) -> String {
        self.pk.to_string()
    }
}

impl Keyed for Group {
    fn key(&self) -> String {
        normalize_uuid(&self.pk)
    }
}

/// What page 1 announced; every later page must say the same.
#[derive(Clone, Copy, Debug)]
struct Announced {
    count: u64,
    total_pages: u64,
}

/// The pages of one listing, read so far.
pub struct Listing<'a, T> {
    path: &'a str,
    noun: &'a str,
    items: Vec<T>,
    seen: HashSet<String>,
    announced: Option<Announced>,
}

impl<'a, T: Keyed> Listing<'a, T> {
    /// `noun` names the objects in messages ("users", "groups").
    pub fn new(path: &'a str, noun: &'a str) -> Self {
        Self {
            path,
            noun,
            items: Vec::new(),
            seen: HashSet::new(),
            announced: None,
        }
    }

    /// Takes the answer to `GET …?page=<number>`. Returns the page to ask
    /// for next, or `None` once the listing is complete.
    pub fn accept(&mut self, number: u64, page: Page<T>) -> Result<Option<u64>> {
        let Page {
            pagination: p,
            results,
        } = page;
        let announced = *self.announced.get_or_insert(Announced {
            count: p.count,
            total_pages: p.total_pages,
        });
        let of = announced.total_pages;
        if p.count != announced.count || p.total_pages != announced.total_pages {
            return Err(self.error(
                announced,
                format!(
                    "the directory changed while it was read: page 1 announced {} {} on {} \
                     page(s), page {number} announced {} on {}; retry later",
                    announced.count, self.noun, announced.total_pages, p.count, p.total_pages
                ),
            ));
        }
        if p.current != number || p.previous != number - 1 || number > of {
            return Err(self.error(
                announced,
                format!(
                    "asked for page {number} of {of}, got page {} (previous {})",
                    p.current, p.previous
                ),
            ));
        }
        let read = self.items.len() as u64;
        let got = results.len() as u64;
        if got == 0 && announced.count > 0 {
            return Err(self.error(
                announced,
                format!(
                    "page {number} of {of} was empty, announced as items {}–{}",
                    p.start_index, p.end_index
                ),
            ));
        }
        let repeated = results
            .iter()
            .filter(|item| !self.seen.insert(item.key()))
            .count();
        if repeated > 0 {
            return Err(self.error(
                announced,
                format!("page {number} of {of} repeated {repeated} item(s) already read"),
            ));
        }
        self.items.extend(results);
        // The page holds exactly the positions it announces, right after
        // the pages before. Django's paginator: an empty listing is one
        // empty page, items 0–0.
        let (start, end) = if announced.count == 0 {
            (0, 0)
        } else {
            (read + 1, read + got)
        };
        if p.start_index != start || p.end_index != end {
            return Err(self.error(
                announced,
                format!(
                    "page {number} of {of} held {got} {} announced as items {}–{}, \
                     following {read} already read",
                    self.noun, p.start_index, p.end_index
                ),
            ));
        }
        if number == of && p.end_index != announced.count {
            return Err(self.error(
                announced,
                format!(
                    "the last page, {number} of {of}, ended at item {}",
                    p.end_index
                ),
            ));
        }
        let expected_next = if number < of { number + 1 } else { 0 };
        if p.next != expected_next {
            return Err(self.error(
                announced,
                format!("page {number} of {of} said next = {}", p.next),
            ));
        }
        if p.next != 0 {
            return Ok(Some(p.next));
        }
        // Implied by the checks above; kept as the one rule that matters.
        if self.seen.len() as u64 != announced.count {
            return Err(self.error(announced, format!("the listing ended at page {number}")));
        }
        Ok(None)
    }

    /// Every object, once the listing is complete.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    fn error(&self, announced: Announced, reason: String) -> Error {
        Error::Authentik(format!(
            "GET {}: got {} distinct {}, Authentik announced {} ({reason})",
            self.path,
            self.seen.len(),
            self.noun,
            announced.count
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authentik::model::Pagination;

    fn user(pk: i64) -> User {
        User {
            pk,
            username: format!("user{pk}"),
            name: String::new(),
            email: format!("user{pk}@example.com"),
            is_active: true,
            user_type: "internal".into(),
            groups: Vec::new(),
            uid: String::new(),
            attributes: serde_json::Value::Null,
        }
    }

    /// Page `number` of `pks` split into pages of `size`, as Django's
    /// paginator with Authentik's envelope serves it.
    fn faithful(pks: &[i64], size: usize, number: u64) -> Page<User> {
        let count = pks.len();
        let total_pages = if count == 0 { 1 } else { count.div_ceil(size) } as u64;
        let start = (number as usize - 1) * size;
        let end = (start + size).min(count);
        Page {
            pagination: Pagination {
                next: if number < total_pages { number + 1 } else { 0 },
                previous: number - 1,
                count: count as u64,
                current: number,
                total_pages,
                start_index: if count == 0 { 0 } else { start as u64 + 1 },
                end_index: end as u64,
            },
            results: pks[start..end].iter().map(|pk| user(*pk)).collect(),
        }
    }

    /// Feeds pages from `serve` until the listing completes or fails.
    fn read(serve: impl Fn(u64) -> Page<User>) -> Result<Vec<i64>> {
        let mut listing = Listing::new("/api/v3/core/users/", "users");
        let mut number = 1;
        while let Some(next) = listing.accept(number, serve(number))? {
            number = next;
        }
        Ok(listing.into_items().iter().map(|u| u.pk).collect())
    }

    fn message(result: Result<Vec<i64>>) -> String {
        match result {
            Err(Error::Authentik(message)) => message,
            other => panic!("expected an Authentik error, got {other:?}"),
        }
    }

    const PKS: [i64; 7] = [1, 2, 3, 4, 5, 6, 7];

    #[test]
    fn a_faithful_listing_is_read_whole() {
        assert_eq!(read(|n| faithful(&PKS, 3, n)).unwrap(), PKS.to_vec());
        assert_eq!(read(|n| faithful(&PKS, 7, n)).unwrap(), PKS.to_vec());
        assert_eq!(read(|n| faithful(&PKS, 100, n)).unwrap(), PKS.to_vec());
        // An empty directory is one empty page; the engine's plausibility
        // guard, not pagination, decides what that means.
        assert_eq!(read(|n| faithful(&[], 20, n)).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn an_empty_page_while_next_says_more_is_an_error() {
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 2 {
                page.results.clear();
            }
            page
        }));
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 3 distinct users, Authentik announced 7 \
             (page 2 of 3 was empty, announced as items 4–6)"
        );
    }

    #[test]
    fn next_zero_before_count_items_is_an_error() {
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 2 {
                page.pagination.next = 0;
            }
            page
        }));
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 6 distinct users, Authentik announced 7 \
             (page 2 of 3 said next = 0)"
        );
        // The same when the whole envelope pretends page 2 is the last.
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            page.pagination.total_pages = 2;
            if n == 2 {
                page.pagination.next = 0;
            }
            page
        }));
        assert!(
            err.contains("got 6 distinct users, Authentik announced 7"),
            "{err}"
        );
    }

    #[test]
    fn a_short_page_is_an_error() {
        // A body cut mid-way that still parses: two of three items.
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 2 {
                page.results.pop();
            }
            page
        }));
        assert!(
            err.contains("page 2 of 3 held 2 users announced as items 4–6"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_count_is_an_error() {
        for wrong in [6, 8, 14] {
            let err = message(read(|n| {
                let mut page = faithful(&PKS, 3, n);
                page.pagination.count = wrong;
                page
            }));
            assert!(
                err.contains(&format!("Authentik announced {wrong}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_changing_count_is_an_error() {
        // Someone was added between page 1 and page 2.
        let err = message(read(|n| {
            if n == 1 {
                faithful(&PKS, 3, n)
            } else {
                faithful(&[1, 2, 3, 4, 5, 6, 7, 8], 3, n)
            }
        }));
        assert!(
            err.contains("the directory changed while it was read"),
            "{err}"
        );
        assert!(err.contains("page 2 announced 8 on 3"), "{err}");
    }

    #[test]
    fn repeated_items_are_an_error() {
        // Page 2 starts one row early: a row shifted under the offset.
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 2 {
                page.results = [3, 4, 5].iter().map(|pk| user(*pk)).collect();
            }
            page
        }));
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 5 distinct users, Authentik announced 7 \
             (page 2 of 3 repeated 1 item(s) already read)"
        );
        // Every page the same: the server ignores `page`.
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            page.results = [1, 2, 3].iter().map(|pk| user(*pk)).collect();
            page
        }));
        assert!(err.contains("page 2 of 3 repeated 3 item(s)"), "{err}");
    }

    #[test]
    fn a_broken_next_chain_is_an_error() {
        for bad_next in [1, 2, 4, 9] {
            let err = message(read(|n| {
                let mut page = faithful(&PKS, 3, n);
                if n == 2 {
                    page.pagination.next = bad_next;
                }
                page
            }));
            assert!(
                err.contains(&format!("page 2 of 3 said next = {bad_next}")),
                "{err}"
            );
        }
        // The last page must say 0.
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 3 {
                page.pagination.next = 4;
            }
            page
        }));
        assert!(err.contains("page 3 of 3 said next = 4"), "{err}");
    }

    #[test]
    fn a_page_answered_as_another_is_an_error() {
        let err = message(read(|n| {
            let mut page = faithful(&PKS, 3, n);
            if n == 2 {
                page.pagination.current = 1;
            }
            page
        }));
        assert!(err.contains("asked for page 2 of 3, got page 1"), "{err}");
    }

    #[test]
    fn groups_are_distinct_by_normalised_uuid() {
        let group = |pk: &str| Group {
            pk: pk.into(),
            name: pk.into(),
            parents: None,
            parent: None,
            users: Vec::new(),
            attributes: serde_json::Value::Null,
        };
        let mut listing = Listing::new("/api/v3/core/groups/", "groups");
        let page = Page {
            pagination: Pagination {
                next: 0,
                previous: 0,
                count: 2,
                current: 1,
                total_pages: 1,
                start_index: 1,
                end_index: 2,
            },
            results: vec![
                group("3f2a0000-0000-0000-0000-000000000001"),
                group("3F2A0000000000000000000000000001"),
            ],
        };
        let err = listing.accept(1, page).unwrap_err().to_string();
        assert!(
            err.contains(
                "got 1 distinct groups, Authentik announced 2 (page 1 of 1 repeated 1 item(s)"
            ),
            "{err}"
        );
    }
}
