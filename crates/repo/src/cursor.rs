//! Keyset cursors: opaque to callers, versioned, carrying a full-precision position and the
//! direction they page in, and checked on the way back in.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::RepoError;

const VERSION: &str = "v1";

/// Which way a cursor pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards later items.
    Forward,
    /// Towards earlier items.
    Backward,
}

/// A position in a list ordered by `(created_at, id)`: the last item of a page (forward) or the
/// first (backward). Only repository implementations look inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// `created_at` of the item, at microsecond precision.
    pub created_at: DateTime<Utc>,
    /// `id` of the item: the tie-breaker.
    pub id: uuid::Uuid,
    /// Which way to page from it.
    pub direction: Direction,
}

/// An opaque cursor (base64url text). Callers pass it back unchanged; a malformed or altered
/// cursor is a `Validation` error on the field `cursor`.
///
/// Serialises as its text. Deserialising runs [`Cursor::parse`], so a malformed or altered cursor
/// is a deserialisation error whose message is the `Validation` error's; whether it belongs to the
/// list it is used for is checked by [`Cursor::decode`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Encodes a position in the list described by `context` (the filter, for example), so the
    /// cursor is refused by any other list. The payload carries the microseconds since the epoch,
    /// so no row is skipped or repeated because of a rounded timestamp, and a short digest that
    /// catches edits.
    #[must_use]
    pub fn encode(position: Position, context: &str) -> Self {
        let direction = match position.direction {
            Direction::Forward => 'f',
            Direction::Backward => 'b',
        };
        let payload = format!(
            "{VERSION}|{direction}|{}|{}|{}",
            position.created_at.timestamp_micros(),
            position.id.simple(),
            digest(context)
        );
        let digest = digest(&payload);
        Self(URL_SAFE_NO_PAD.encode(format!("{payload}|{digest}")))
    }

    /// Decodes a cursor a caller handed back for the list described by `context`.
    pub fn decode(&self, context: &str) -> Result<Position, RepoError> {
        let (position, list) = self.checked_payload()?;
        if list != digest(context) {
            return Err(RepoError::validation(
                "cursor",
                "belongs to another list (a different filter or scope)",
            ));
        }
        Ok(position)
    }

    /// Checks text received from a caller as far as it can without knowing the list: base64url,
    /// intact (its digest), this version, a position in range. [`Cursor::decode`] checks it
    /// again, and that it belongs to the list.
    pub fn parse(text: impl Into<String>) -> Result<Self, RepoError> {
        let cursor = Self(text.into());
        cursor.checked_payload()?;
        Ok(cursor)
    }

    /// The position and the digest of the list, once every check but the list's has passed.
    fn checked_payload(&self) -> Result<(Position, String), RepoError> {
        let invalid = || RepoError::validation("cursor", "is not a cursor this service issued");
        let bytes = URL_SAFE_NO_PAD.decode(self.0.as_bytes()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (payload, digest_given) = text.rsplit_once('|').ok_or_else(invalid)?;
        if digest(payload) != digest_given {
            return Err(invalid());
        }
        let parts: Vec<&str> = payload.split('|').collect();
        let [version, direction, micros, id, list] = parts.as_slice() else {
            return Err(invalid());
        };
        if *version != VERSION {
            return Err(RepoError::validation(
                "cursor",
                format!("has version {version}, expected {VERSION}"),
            ));
        }
        let direction = match *direction {
            "f" => Direction::Forward,
            "b" => Direction::Backward,
            _ => return Err(invalid()),
        };
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let created_at = domain::time::storable(created_at, "cursor").map_err(|_| invalid())?;
        let id = uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
        let position = Position {
            created_at,
            id,
            direction,
        };
        Ok((position, (*list).to_owned()))
    }

    /// Wraps text received from a caller unchecked; it is checked when decoded. [`Cursor::parse`]
    /// checks it now.
    #[must_use]
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text to hand to callers.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({})", self.0)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(text).map_err(serde::de::Error::custom)
    }
}

/// The first 8 bytes of SHA-256, hex: catches edits and truncation. Not a signature: someone who
/// rebuilds the digest can forge a cursor, but a forged cursor only positions a page inside the
/// list the caller may read anyway, and its values are range-checked.
fn digest(payload: &str) -> String {
    Sha256::digest(payload.as_bytes())
        .iter()
        .take(8)
        .fold(String::with_capacity(16), |mut hex, byte| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            created_at: DateTime::from_timestamp_micros(1_767_225_600_123_456).expect("valid"),
            id: uuid::Uuid::now_v7(),
            direction: Direction::Backward,
        }
    }

    #[test]
    fn round_trips_at_microsecond_precision() {
        let position = position();
        let cursor = Cursor::encode(position, "users|Live|");
        assert!(
            cursor
                .as_str()
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
        assert_eq!(Cursor::from_text(cursor.as_str()).decode("users|Live|"), Ok(position));
        let other = Cursor::from_text(cursor.as_str())
            .decode("users|WithDeleted|")
            .expect_err("another list");
        assert!(other.to_string().contains("another list"), "{other}");
    }

    #[track_caller]
    fn check_rejected(text: &str) {
        let error = Cursor::from_text(text).decode("users|Live|").expect_err(text);
        assert!(
            matches!(&error, RepoError::Validation { field, .. } if field == "cursor"),
            "{error}"
        );
    }

    #[test]
    fn malformed_and_altered_cursors_are_validation_errors() {
        let cursor = Cursor::encode(position(), "users|Live|");
        check_rejected("");
        check_rejected("not base64 !!");
        check_rejected(&URL_SAFE_NO_PAD.encode("v1|f|1|x"));
        check_rejected(&cursor.as_str()[..cursor.as_str().len() - 3]);
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor.as_str()).expect("base64")).expect("utf8");
        let altered = decoded.replacen("|b|", "|f|", 1);
        check_rejected(&URL_SAFE_NO_PAD.encode(altered));
        let old_version = decoded.replacen("v1|", "v0|", 1);
        check_rejected(&URL_SAFE_NO_PAD.encode(old_version));
        check_rejected("'; DROP TABLE users; --");
    }

    #[test]
    fn cursors_serialise_as_their_text_and_deserialise_through_the_checks() {
        let cursor = Cursor::encode(position(), "users|Live|");
        let json = serde_json::to_string(&cursor).expect("serialise");
        assert_eq!(json, format!("\"{}\"", cursor.as_str()));
        assert_eq!(serde_json::from_str::<Cursor>(&json).expect("deserialise"), cursor);
        assert_eq!(Cursor::parse(cursor.as_str()), Ok(cursor.clone()));
        // The list is checked by `decode`, which knows it.
        let elsewhere = serde_json::from_str::<Cursor>(&json).expect("deserialise");
        assert!(elsewhere.decode("users|WithDeleted|").is_err());
    }

    #[test]
    fn a_bad_cursor_fails_to_deserialise_with_a_message() {
        let cursor = Cursor::encode(position(), "users|Live|");
        let truncated = &cursor.as_str()[..cursor.as_str().len() - 3];
        for text in ["", "not base64 !!", truncated, "'; DROP TABLE users; --"] {
            let error = serde_json::from_str::<Cursor>(&serde_json::to_string(text).expect("json"))
                .expect_err(text)
                .to_string();
            assert!(
                error.starts_with("cursor: is not a cursor this service issued"),
                "{text:?}: {error}"
            );
            assert!(matches!(Cursor::parse(text), Err(RepoError::Validation { field, .. }) if field == "cursor"));
        }
        let error = serde_json::from_str::<Cursor>("42")
            .expect_err("not a string")
            .to_string();
        assert!(error.contains("expected a string"), "{error}");
    }
}
