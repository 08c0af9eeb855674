//! Pagination: offset pages with the total the caller asks for, and keyset pages with opaque
//! cursors.

use serde::Serialize;

use crate::{Cursor, RepoError};

/// The largest page any call returns; larger requests are clamped to it.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Which total an offset page carries, chosen by the caller for what the total costs.
///
/// | mode | what the page holds | cost on top of the page |
/// |---|---|---|
/// | `Exact` (the default) | `Total::Exact` | a `count(*)` the database answers from an index: it reads one index entry per matching row |
/// | `Estimate` | `Total::Estimate` on PostgreSQL (the planner's row estimate), `Total::Exact` on SQLite (which keeps no estimates) | one `EXPLAIN` on PostgreSQL, planned but not run |
/// | `Skip` | `Total::NotCounted`, with `has_next` | nothing: the page fetches one row more |
///
/// Whatever the mode, a page that is the list's last (fewer rows than the page size, or no row
/// after it) carries the exact total, known for free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TotalMode {
    /// Count the matching rows exactly: for admin screens that show "page 3 of 120".
    #[default]
    Exact,
    /// The database's estimate: for "about 1.2 million users" on large lists.
    Estimate,
    /// No total: for APIs and infinite scroll, which need only `has_next`.
    Skip,
}

/// The total an offset page carries: what the caller asked for, or better.
///
/// Serialises as `{"kind": "exact", "value": 1234}`, `{"kind": "estimate", "value": 1200}` or
/// `{"kind": "not_counted"}`. Non-exhaustive: a match outside this crate needs a wildcard arm
/// (treat an unknown total as not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Total {
    /// The number of items in the whole list.
    Exact(u64),
    /// An estimate of it, never below the items up to the end of this page.
    Estimate(u64),
    /// Not counted (`TotalMode::Skip`).
    NotCounted,
}

impl Total {
    /// The exact total, if counted.
    #[must_use]
    pub fn exact(&self) -> Option<u64> {
        match self {
            Self::Exact(total) => Some(*total),
            Self::Estimate(_) | Self::NotCounted => None,
        }
    }

    /// The total, exact or estimated.
    #[must_use]
    pub fn value(&self) -> Option<u64> {
        match self {
            Self::Exact(total) | Self::Estimate(total) => Some(*total),
            Self::NotCounted => None,
        }
    }
}

/// `1234`, `about 1234`, or `not counted`.
impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(total) => write!(f, "{total}"),
            Self::Estimate(total) => write!(f, "about {total}"),
            Self::NotCounted => f.write_str("not counted"),
        }
    }
}

/// Page `page` (from 1) of `per_page` items, and which total to return with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    per_page: u32,
    total: TotalMode,
}

impl PageRequest {
    /// Page 0 and a page size of 0 are `Validation` errors; sizes above [`MAX_PAGE_SIZE`] are
    /// clamped to it. The page carries an exact total unless [`PageRequest::with_total`] says
    /// otherwise.
    pub fn new(page: u32, per_page: u32) -> Result<Self, RepoError> {
        if page == 0 {
            return Err(RepoError::validation("page", "pages are numbered from 1"));
        }
        if per_page == 0 {
            return Err(RepoError::validation("per_page", "must be at least 1"));
        }
        Ok(Self {
            page,
            per_page: per_page.min(MAX_PAGE_SIZE),
            total: TotalMode::default(),
        })
    }

    /// The same page with another kind of total.
    #[must_use]
    pub fn with_total(self, total: TotalMode) -> Self {
        Self { total, ..self }
    }

    /// The page number, from 1.
    #[must_use]
    pub fn page(&self) -> u32 {
        self.page
    }

    /// The page size, at most [`MAX_PAGE_SIZE`].
    #[must_use]
    pub fn per_page(&self) -> u32 {
        self.per_page
    }

    /// Which total the caller asked for.
    #[must_use]
    pub fn total_mode(&self) -> TotalMode {
        self.total
    }

    /// Rows to skip.
    #[must_use]
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
}

/// One page of an offset-paginated list. Serialises (when `T` does) as
/// `{"items": [..], "page": 2, "per_page": 20, "total": {"kind": "exact", "value": 41}, "has_next": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffsetPage<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// This page's number, from 1.
    pub page: u32,
    /// The page size used.
    pub per_page: u32,
    /// Items in the whole list, as the request's [`TotalMode`] asked.
    pub total: Total,
    /// Whether an item follows this page.
    pub has_next: bool,
}

impl<T> OffsetPage<T> {
    /// A page of `items` for `request`. `has_next` says whether the list goes on after the
    /// page; `counted` is the total the database gave (`None` when not counted). A page that ends
    /// the list carries the exact total whatever was asked, and an estimate is raised to at least
    /// the items up to the end of the page.
    #[must_use]
    pub fn new(items: Vec<T>, request: PageRequest, has_next: bool, counted: Total) -> Self {
        let through_page = request.offset() + items.len() as u64;
        let total = match counted {
            Total::Exact(total) => Total::Exact(total),
            // The last page, and not past the end: everything before it exists.
            _ if !has_next && (!items.is_empty() || request.offset() == 0) => Total::Exact(through_page),
            Total::Estimate(estimate) => Total::Estimate(estimate.max(through_page + u64::from(has_next))),
            Total::NotCounted => Total::NotCounted,
        };
        Self {
            items,
            page: request.page,
            per_page: request.per_page,
            total,
            has_next,
        }
    }

    /// Pages in the whole list (0 for an empty list), when the total is known or estimated.
    #[must_use]
    pub fn total_pages(&self) -> Option<u64> {
        self.total.value().map(|total| total.div_ceil(u64::from(self.per_page)))
    }

    /// Whether a page precedes this one.
    #[must_use]
    pub fn has_previous(&self) -> bool {
        self.page > 1
    }
}

/// Where a keyset page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysetStart {
    /// The first page.
    First,
    /// The page after the one whose `next` cursor this is.
    After(Cursor),
    /// The page before the one whose `previous` cursor this is.
    Before(Cursor),
}

/// A keyset page request: where to start and how many items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetRequest {
    /// Where the page starts.
    pub start: KeysetStart,
    limit: u32,
}

impl KeysetRequest {
    /// A limit of 0 is a `Validation` error; limits above [`MAX_PAGE_SIZE`] are clamped.
    pub fn new(start: KeysetStart, limit: u32) -> Result<Self, RepoError> {
        if limit == 0 {
            return Err(RepoError::validation("limit", "must be at least 1"));
        }
        Ok(Self {
            start,
            limit: limit.min(MAX_PAGE_SIZE),
        })
    }

    /// The page size, at most [`MAX_PAGE_SIZE`].
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// One page of a keyset-paginated list, in the list's order whichever way it was paged.
/// Serialises (when `T` does) as `{"items": [..], "next": "<cursor>", "previous": null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysetPage<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor for the page after this one, when there is one.
    pub next: Option<Cursor>,
    /// Cursor for the page before this one, when there is one.
    pub previous: Option<Cursor>,
}

impl<T> KeysetPage<T> {
    /// Whether a page follows.
    #[must_use]
    pub fn has_next(&self) -> bool {
        self.next.is_some()
    }

    /// Whether a page precedes.
    #[must_use]
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests_are_checked_and_clamped() {
        assert!(matches!(PageRequest::new(0, 10), Err(RepoError::Validation { field, .. }) if field == "page"));
        assert!(matches!(PageRequest::new(1, 0), Err(RepoError::Validation { field, .. }) if field == "per_page"));
        let huge = PageRequest::new(3, u32::MAX).expect("clamped");
        assert_eq!((huge.per_page(), huge.offset()), (MAX_PAGE_SIZE, 200));
        assert!(KeysetRequest::new(KeysetStart::First, 0).is_err());
        assert_eq!(
            KeysetRequest::new(KeysetStart::First, 1_000).expect("clamped").limit(),
            MAX_PAGE_SIZE
        );
    }

    #[track_caller]
    fn check_total(page: u32, items: usize, has_next: bool, counted: Total, expected: Total) {
        let request = PageRequest::new(page, 10).expect("valid");
        let built = OffsetPage::new(vec![(); items], request, has_next, counted);
        assert_eq!(built.total, expected);
    }

    #[test]
    fn offset_pages_carry_the_best_total_they_know() {
        // The last page knows the exact total, whatever was asked.
        check_total(3, 4, false, Total::NotCounted, Total::Exact(24));
        check_total(3, 4, false, Total::Estimate(1_000), Total::Exact(24));
        check_total(1, 0, false, Total::NotCounted, Total::Exact(0));
        // Past the end nothing is known without a count.
        check_total(5, 0, false, Total::NotCounted, Total::NotCounted);
        check_total(5, 0, false, Total::Exact(24), Total::Exact(24));
        // An estimate below what the page proves is raised.
        check_total(3, 10, true, Total::Estimate(5), Total::Estimate(31));
        check_total(3, 10, true, Total::Estimate(500), Total::Estimate(500));
        check_total(3, 10, true, Total::NotCounted, Total::NotCounted);
        check_total(3, 10, true, Total::Exact(77), Total::Exact(77));
    }

    #[test]
    fn pages_serialise_to_the_documented_json() {
        let position = crate::Position {
            created_at: chrono::DateTime::from_timestamp_micros(1_767_225_600_123_456).expect("valid"),
            id: uuid::Uuid::now_v7(),
            direction: crate::Direction::Forward,
        };
        let next = Cursor::encode(position, "users|Live|");
        let keyset = KeysetPage {
            items: vec!["ann", "bob"],
            next: Some(next.clone()),
            previous: None,
        };
        let json = serde_json::to_value(&keyset).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"items": ["ann", "bob"], "next": next.as_str(), "previous": null})
        );
        // The cursor comes back from the JSON as it left, and still decodes for its list.
        let returned: Cursor = serde_json::from_value(json["next"].clone()).expect("a cursor");
        assert_eq!(returned.decode("users|Live|"), Ok(position));

        let request = PageRequest::new(2, 20).expect("valid");
        let offset = OffsetPage::new(vec![1, 2], request, true, Total::Exact(41));
        assert_eq!(
            serde_json::to_value(&offset).expect("serialise"),
            serde_json::json!({
                "items": [1, 2], "page": 2, "per_page": 20, "total": {"kind": "exact", "value": 41}, "has_next": true
            })
        );
        let totals =
            [Total::Estimate(1_200), Total::NotCounted].map(|total| serde_json::to_value(total).expect("json"));
        assert_eq!(
            totals,
            [
                serde_json::json!({"kind": "estimate", "value": 1200}),
                serde_json::json!({"kind": "not_counted"})
            ]
        );
    }

    #[test]
    fn totals_say_what_they_are() {
        assert_eq!(Total::Exact(12).to_string(), "12");
        assert_eq!(Total::Estimate(1_200).to_string(), "about 1200");
        assert_eq!(Total::NotCounted.to_string(), "not counted");
    }

    #[test]
    fn offset_pages_count_their_pages() {
        let request = PageRequest::new(1, 10).expect("valid");
        assert_eq!(
            OffsetPage::new(vec![1], request, false, Total::Exact(0)).total_pages(),
            Some(0)
        );
        assert_eq!(
            OffsetPage::new(vec![1], request, false, Total::Exact(10)).total_pages(),
            Some(1)
        );
        assert_eq!(
            OffsetPage::new(vec![1], request, true, Total::Exact(11)).total_pages(),
            Some(2)
        );
        assert_eq!(
            OffsetPage::new(vec![1], request, true, Total::NotCounted).total_pages(),
            None
        );
        assert_eq!(
            PageRequest::new(2, 10)
                .expect("valid")
                .with_total(TotalMode::Skip)
                .total_mode(),
            TotalMode::Skip
        );
        assert_eq!(PageRequest::new(2, 10).expect("valid").total_mode(), TotalMode::Exact);
    }
}
