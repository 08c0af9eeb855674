//! SQL types that mean the same on both backends, so that one `schema.rs` serves both:
//! `Uuid` (PostgreSQL `uuid`; SQLite a 16-byte BLOB), `Instant`, a timestamp (PostgreSQL `timestamptz`;
//! SQLite fixed-width UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the format the SQLite schema's
//! `chk_*_storage_format` checks demand, whose text order is time order), and `Json`
//! (PostgreSQL `jsonb`; SQLite text checked by `json_valid`).
//!
//! Rust values travel in two newtypes, `DbUuid` and `DbTimestamp`, which carry per-backend
//! `ToSql`/`FromSql` plus the three bridge impls that diesel's `MultiConnection` needs for a custom
//! type (`HasSqlType`, `FromSql` and `ToSql` for the generated `MultiBackend`).

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::HasSqlType;
use diesel::sqlite::Sqlite;

use crate::connection::MultiBackend;

diesel::define_sql_function! {
    /// SQL `lower(text)`. On SQLite every connection replaces the built-in, which folds ASCII
    /// only, with [`fold_case`], the Unicode simple lower-case mapping that PostgreSQL's `lower`
    /// applies under a UTF-8 `LC_CTYPE`, so that case-insensitive search and the
    /// `email = lower(email)` check mean on SQLite what they mean on PostgreSQL.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    /// The later of two instants: PostgreSQL's `greatest`; on SQLite every connection registers
    /// a function of that name. Writes set `updated_at = greatest(updated_at, <now>)`, so a row
    /// created or changed by a writer whose clock runs ahead (another instance, or a transaction
    /// that committed after this one read its clock) never gets an `updated_at` before its
    /// `created_at` or before its previous `updated_at`.
    fn greatest(a: Instant, b: Instant) -> Instant;
}

diesel::define_sql_function! {
    /// [`greatest`] as SQLite sees it (an `Instant` is fixed-width UTC text there, so text order
    /// is time order): only for registering the SQLite function.
    #[sql_name = "greatest"]
    fn greatest_text(a: diesel::sql_types::Text, b: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Lower-cases `text` one character at a time with Unicode's simple mapping: no context (a
/// capital sigma is always `σ`, never the final `ς`) and one character for one (`İ` becomes `i`,
/// not `i` and a combining dot). Because it maps each character on its own, the fold of a
/// substring is a substring of the fold, which substring search relies on; Rust's
/// `str::to_lowercase` is neither context-free nor one-for-one.
#[must_use]
pub fn fold_case(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

/// One character of [`fold_case`]: its simple lower-case mapping, or itself.
#[must_use]
pub fn fold_char(character: char) -> char {
    let mut lower = character.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => single,
        // Only U+0130 has a longer full mapping; its simple mapping is `i`.
        _ if character == '\u{130}' => 'i',
        _ => character,
    }
}

/// A UUID: `uuid` on PostgreSQL, a 16-byte BLOB on SQLite.
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Binary"))]
pub struct Uuid;

/// A UTC instant at microsecond precision: `timestamptz` on PostgreSQL, fixed-width text on
/// SQLite. (Not named `Timestamp`: diesel's `table!` gives a type of that name date arithmetic
/// that this type does not have.)
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Instant;

/// A JSON document: `jsonb` on PostgreSQL, text on SQLite (where the schema checks it with
/// `json_valid`).
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Json;

/// A JSON document as stored, in its text form: produced by `serde_json` on the way in, and
/// parsed by the caller on the way out.
#[derive(Debug, Clone, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
#[diesel(sql_type = Json)]
pub struct DbJson(pub String);

/// The only version of PostgreSQL's binary `jsonb` format: one byte, then the text.
const JSONB_VERSION: u8 = 1;

impl ToSql<Json, Pg> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        use std::io::Write as _;
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Json, Pg> for DbJson {
    fn from_sql(bytes: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        match bytes.as_bytes().split_first() {
            Some((&JSONB_VERSION, text)) => Ok(Self(std::str::from_utf8(text)?.to_owned())),
            _ => Err("unsupported jsonb format version".into()),
        }
    }
}

impl ToSql<Json, Sqlite> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_str());
        Ok(IsNull::No)
    }
}

impl FromSql<Json, Sqlite> for DbJson {
    fn from_sql(mut bytes: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(bytes.read_text().to_owned()))
    }
}

/// A UUID as stored: convert with `From` at the edge.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Uuid)]
pub struct DbUuid(pub uuid::Uuid);

/// A timestamp as stored: convert with `From` at the edge.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Instant)]
pub struct DbTimestamp(pub DateTime<Utc>);

impl From<uuid::Uuid> for DbUuid {
    fn from(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }
}

impl From<DbUuid> for uuid::Uuid {
    fn from(uuid: DbUuid) -> Self {
        uuid.0
    }
}

impl From<DateTime<Utc>> for DbTimestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant)
    }
}

impl From<DbTimestamp> for DateTime<Utc> {
    fn from(instant: DbTimestamp) -> Self {
        instant.0
    }
}

/// The SQLite text form of a timestamp. Sub-microsecond digits are dropped, as PostgreSQL does.
const SQLITE_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl ToSql<Uuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <uuid::Uuid as ToSql<diesel::sql_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Uuid, Pg> for DbUuid {
    fn from_sql(bytes: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <uuid::Uuid as FromSql<diesel::sql_types::Uuid, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<Uuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_bytes().as_slice());
        Ok(IsNull::No)
    }
}

impl FromSql<Uuid, Sqlite> for DbUuid {
    fn from_sql(mut bytes: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        // Read in place: no copy of the 16 bytes into a `Vec` first.
        Ok(Self(uuid::Uuid::from_slice(bytes.read_blob())?))
    }
}

impl ToSql<Instant, Pg> for DbTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Instant, Pg> for DbTimestamp {
    fn from_sql(bytes: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<Instant, Sqlite> for DbTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(IsNull::No)
    }
}

/// `instant` in [`SQLITE_TIMESTAMP_FORMAT`], written digit by digit: chrono's `format` parses
/// the format string on every call, which showed up in bulk loads. Years outside 0..=9999 (which
/// the storage check refuses anyway) fall back to chrono.
fn sqlite_text(instant: DateTime<Utc>) -> String {
    use chrono::{Datelike as _, Timelike as _};
    let year = instant.year();
    if !(0..=9999).contains(&year) {
        return instant.format(SQLITE_TIMESTAMP_FORMAT).to_string();
    }
    let mut text = [0_u8; 27];
    let mut put = |at: usize, width: usize, value: u32| {
        let mut value = value;
        for slot in text[at..at + width].iter_mut().rev() {
            *slot = b"0123456789"[(value % 10) as usize];
            value /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, instant.month());
    put(8, 2, instant.day());
    put(11, 2, instant.hour());
    put(14, 2, instant.minute());
    put(17, 2, instant.second());
    // A leap second (nanosecond >= 1e9) keeps chrono's own rendering.
    let micros = instant.nanosecond() / 1_000;
    if micros >= 1_000_000 {
        return instant.format(SQLITE_TIMESTAMP_FORMAT).to_string();
    }
    put(20, 6, micros);
    for (at, separator) in SQLITE_TIMESTAMP_SEPARATORS {
        text[at] = separator;
    }
    String::from_utf8_lossy(&text).into_owned()
}

impl FromSql<Instant, Sqlite> for DbTimestamp {
    fn from_sql(mut bytes: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = bytes.read_text();
        if let Some(instant) = parse_sqlite_text(text) {
            return Ok(Self(instant));
        }
        // Anything but the fixed-width form (the storage check allows no other, but a leap
        // second or an older writer's text still parse as they did).
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.fZ")
            .map_err(|error| format!("invalid stored timestamp {text:?}: {error}"))?;
        Ok(Self(naive.and_utc()))
    }
}

/// Where [`SQLITE_TIMESTAMP_FORMAT`] puts its separators, written and checked byte by byte.
const SQLITE_TIMESTAMP_SEPARATORS: [(usize, u8); 7] = [
    (4, b'-'),
    (7, b'-'),
    (10, b'T'),
    (13, b':'),
    (16, b':'),
    (19, b'.'),
    (26, b'Z'),
];

/// The inverse of [`sqlite_text`]: [`SQLITE_TIMESTAMP_FORMAT`] read digit by digit, `None` for
/// any other text. chrono's `parse_from_str` parses its format string on every call: two
/// timestamps of a row cost about a fifth of a SQLite point read.
fn parse_sqlite_text(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() != 27
        || SQLITE_TIMESTAMP_SEPARATORS
            .iter()
            .any(|&(at, separator)| bytes[at] != separator)
    {
        return None;
    }
    let number = |from: usize, to: usize| {
        bytes[from..to].iter().try_fold(0_u32, |value, &digit| {
            digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(number(0, 4)?).ok()?, number(5, 7)?, number(8, 10)?)?;
    let time =
        chrono::NaiveTime::from_hms_micro_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, number(20, 26)?)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_matches_the_format() {
        for text in [
            "2026-11-22T04:20:48.121224Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00.000001Z",
        ] {
            let instant = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.fZ")
                .expect("valid")
                .and_utc();
            assert_eq!(sqlite_text(instant), text);
            assert_eq!(
                sqlite_text(instant),
                instant.format(SQLITE_TIMESTAMP_FORMAT).to_string()
            );
            assert_eq!(parse_sqlite_text(text), Some(instant), "{text}");
        }
        // Not the fixed-width form: left to chrono's parser.
        for text in [
            "2026-11-22T04:20:48.121224",
            "2026-11-22 04:20:48.121224Z",
            "2026-11-22T04:20:48.12122Z",
            "2026-13-22T04:20:48.121224Z",
            "2026-11-22T23:59:60.500000Z",
            "2026-11-22T04:20:4x.121224Z",
            "+026-11-22T04:20:48.121224Z",
        ] {
            assert_eq!(parse_sqlite_text(text), None, "{text}");
        }
        let nanos = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid");
        assert_eq!(
            sqlite_text(nanos),
            "2023-11-14T22:13:20.123456Z",
            "sub-microseconds dropped"
        );
    }
}

macro_rules! bridge_to_multi_backend {
    ($sql_type:ident, $rust_type:ty) => {
        impl HasSqlType<$sql_type> for MultiBackend {
            fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
                Self::lookup_sql_type::<$sql_type>(lookup)
            }
        }

        impl FromSql<$sql_type, MultiBackend> for $rust_type {
            fn from_sql(bytes: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                bytes.from_sql::<Self, $sql_type>()
            }
        }

        impl ToSql<$sql_type, MultiBackend> for $rust_type {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
                out.set_value(($sql_type, self));
                Ok(IsNull::No)
            }
        }
    };
}

bridge_to_multi_backend!(Uuid, DbUuid);
bridge_to_multi_backend!(Instant, DbTimestamp);
bridge_to_multi_backend!(Json, DbJson);
