//! Listing faults: what a proxy, a timeout mid-body or a server bug can do
//! to a paged listing. Off by default; without one the listing is faithful
//! to `authentik/api/pagination.py` (page-number `next`, clamped page size).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::drf::Page;

/// Which list endpoint a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// `GET /api/v3/core/users/`
    Users,
    /// `GET /api/v3/core/groups/`
    Groups,
}

/// One way a listing goes wrong. As JSON (`/__sim/list_fault`):
/// `{"kind": "empty_page", "page": 2}`, `{"kind": "end_after", "page": 2}`,
/// `{"kind": "wrong_count", "delta": 5}`, `{"kind": "repeat", "page": 2,
/// "by": 1}`, `{"kind": "only_first", "keep": 4}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ListFault {
    /// Page `page` comes back with no results; its envelope is unchanged,
    /// so `next` still says there is more (a body cut by a proxy).
    EmptyPage { page: usize },
    /// Page `page` says `next = 0`, as if it were the last, although more
    /// pages remain; the rest of its envelope is unchanged.
    EndAfter { page: usize },
    /// Every page announces a `count` off by `delta`; everything else is
    /// what the real directory gives.
    WrongCount { delta: i64 },
    /// Page `page` starts `by` rows early: it repeats the end of the page
    /// before and leaves out as many of its own, as an offset does when
    /// rows shift between two page reads. Its envelope is unchanged.
    Repeat { page: usize, by: usize },
    /// The listing shows only the first `keep` objects (in the requested
    /// order), with an envelope consistent with that: what a sync account
    /// with object permissions on part of the directory sees. No paging
    /// check can tell; only the user-drop guard can.
    OnlyFirst { keep: usize },
}

impl ListFault {
    /// How many of the `total` matching objects the listing admits to.
    pub(crate) fn visible(&self, total: usize) -> usize {
        match self {
            Self::OnlyFirst { keep } => total.min(*keep),
            _ => total,
        }
    }

    /// Distorts one page after faithful pagination.
    pub(crate) fn distort(&self, page: &mut Page) {
        let number = page.pagination["current"].as_u64().unwrap_or(1) as usize;
        match *self {
            Self::EmptyPage { page: at } if at == number => {
                page.range = page.range.start..page.range.start;
            }
            Self::EndAfter { page: at } if at == number => {
                page.pagination["next"] = json!(0);
            }
            Self::WrongCount { delta } => {
                let count = page.pagination["count"].as_i64().unwrap_or(0);
                page.pagination["count"] = json!((count + delta).max(0));
            }
            Self::Repeat { page: at, by } if at == number => {
                let by = by.min(page.range.start);
                page.range = page.range.start - by..page.range.end - by;
            }
            _ => {}
        }
    }
}
