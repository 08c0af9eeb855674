//! Pagination: offset pages with totals, and keyset pages with opaque cursors.

use crate::{Cursor, RepoError};

/// The largest page any call returns; larger requests are clamped to it.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Page `page` (from 1) of `per_page` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    per_page: u32,
}

impl PageRequest {
    /// Page 0 and a page size of 0 are `Validation` errors; sizes above [`MAX_PAGE_SIZE`] are
    /// clamped to it.
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
        })
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

    /// Rows to skip.
    #[must_use]
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
}

/// One page of an offset-paginated list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetPage<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// This page's number, from 1.
    pub page: u32,
    /// The page size used.
    pub per_page: u32,
    /// Items in the whole list.
    pub total: u64,
    /// Pages in the whole list (0 for an empty list).
    pub total_pages: u64,
}

impl<T> OffsetPage<T> {
    /// A page of `items` out of `total`.
    #[must_use]
    pub fn new(items: Vec<T>, request: PageRequest, total: u64) -> Self {
        Self {
            items,
            page: request.page,
            per_page: request.per_page,
            total,
            total_pages: total.div_ceil(u64::from(request.per_page)),
        }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    #[test]
    fn offset_pages_count_their_pages() {
        let request = PageRequest::new(1, 10).expect("valid");
        assert_eq!(OffsetPage::new(vec![1], request, 0).total_pages, 0);
        assert_eq!(OffsetPage::new(vec![1], request, 10).total_pages, 1);
        assert_eq!(OffsetPage::new(vec![1], request, 11).total_pages, 2);
    }
}
