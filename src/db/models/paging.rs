//! Keyset (cursor) paging for the tenant API's lists. Every list walks
//! `(created_at, id)` newest first; a cursor is the opaque base64url form of
//! the last row's key, and the next page is `(created_at, id) < cursor`.
//! Because the key of a row never changes, a walk through the pages never
//! skips nor repeats a row, however many rows are inserted meanwhile (an
//! OFFSET walk repeats one row per insert ahead of it). A page asks the
//! database for one row more than its limit to learn whether a next page
//! exists, so no page counts the whole list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

/// `limit` when the caller gives none.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest `limit` a caller may ask for.
pub const MAX_LIMIT: i64 = 200;

/// The key of the last row of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

/// A cursor or limit the caller sent that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingError {
    pub field: &'static str,
    pub message: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> Result<Cursor, PagingError> {
        let bad = || PagingError {
            field: "cursor",
            message: "the cursor is not one this API returned".into(),
        };
        if raw.len() > 64 {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (micros, id) = text.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(Cursor { created_at, id })
    }
}

/// The paging part of a list request, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    pub limit: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            after: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl PageRequest {
    /// Checks `limit` (1..=200, default 50) and decodes `cursor`.
    pub fn parse(cursor: Option<&str>, limit: Option<i64>) -> Result<PageRequest, PagingError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(PagingError {
                field: "limit",
                message: format!("the limit must be between 1 and {MAX_LIMIT}"),
            });
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(Cursor::decode(c)?),
            None => None,
        };
        Ok(PageRequest { after, limit })
    }

    /// What to ask the database for: one row beyond the page.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// One page of a list and the cursor of the next, if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts the `limit + 1` rows a query returned into a page; `key` gives a
    /// row's `(created_at, id)`.
    pub fn from_rows(
        mut rows: Vec<T>,
        req: &PageRequest,
        key: impl Fn(&T) -> (DateTime<Utc>, i64),
    ) -> Page<T> {
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| {
                let (created_at, id) = key(r);
                Cursor { created_at, id }.encode()
            })
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_to_the_microsecond() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_650_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn bad_cursors_and_limits_are_refused_by_field() {
        for raw in ["%%%", "bm9wZQ", "MTIzLmFiYw", &"A".repeat(100)] {
            assert_eq!(Cursor::decode(raw).unwrap_err().field, "cursor", "{raw}");
        }
        assert_eq!(
            PageRequest::parse(None, Some(0)).unwrap_err().field,
            "limit"
        );
        assert_eq!(
            PageRequest::parse(None, Some(201)).unwrap_err().field,
            "limit"
        );
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        assert_eq!(PageRequest::parse(Some(""), Some(200)).unwrap().after, None);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_rows_exist() {
        let t = DateTime::from_timestamp_micros(1_000_000).unwrap();
        let req = PageRequest {
            after: None,
            limit: 2,
        };
        let p = Page::from_rows(vec![3i64, 2, 1], &req, |r| (t, *r));
        assert_eq!(p.items, vec![3, 2]);
        let next = Cursor::decode(p.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(next.id, 2);
        let p = Page::from_rows(vec![3i64, 2], &req, |r| (t, *r));
        assert_eq!(p.next_cursor, None);
    }
}
