//! The SQLite checks: `PRAGMA quick_check`, the size of the `-wal` file and the free-list ratio,
//! read through the table-valued pragma functions.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;

use super::{CheckName, CheckResult, Status, Thresholds, float};

/// Runs one SQLite check.
pub(super) fn run(connection: &mut SqliteConnection, check: CheckName, thresholds: Thresholds) -> CheckResult {
    let result = match check {
        CheckName::Integrity => return integrity(connection, thresholds),
        CheckName::WalSize => wal_size(connection, thresholds),
        CheckName::FreePages => free_pages(connection, thresholds),
        other => Ok(CheckResult::without_value(
            other,
            thresholds,
            Status::Unknown,
            format!("{other} is not a SQLite check"),
        )),
    };
    result.unwrap_or_else(|error| CheckResult::could_not_run(check, thresholds, &error))
}

#[derive(QueryableByName)]
struct PageCounts {
    #[diesel(sql_type = BigInt)]
    pages: i64,
    #[diesel(sql_type = BigInt)]
    free: i64,
    #[diesel(sql_type = BigInt)]
    page_size: i64,
}

fn pages(connection: &mut SqliteConnection) -> QueryResult<PageCounts> {
    diesel::sql_query(
        "SELECT (SELECT page_count FROM pragma_page_count) AS pages,
                (SELECT freelist_count FROM pragma_freelist_count) AS free,
                (SELECT page_size FROM pragma_page_size) AS page_size",
    )
    .get_result(connection)
}

/// The main file's path and the database's size (pages times page size), for `growth`.
pub(super) fn database_size(connection: &mut SqliteConnection) -> QueryResult<(String, i64)> {
    let pages = pages(connection)?;
    Ok((main_file(connection)?, pages.pages * pages.page_size))
}

fn main_file(connection: &mut SqliteConnection) -> QueryResult<String> {
    #[derive(QueryableByName)]
    struct File {
        #[diesel(sql_type = Text)]
        file: String,
    }
    let file: File =
        diesel::sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'").get_result(connection)?;
    Ok(file.file)
}

/// `integrity`: `PRAGMA quick_check` (the B-tree structure and page use, without checking that
/// indexes match their tables). A file so damaged that the check itself fails is CRITICAL too.
fn integrity(connection: &mut SqliteConnection, thresholds: Thresholds) -> CheckResult {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let name = CheckName::Integrity;
    match diesel::sql_query("SELECT quick_check AS line FROM pragma_quick_check").load::<Line>(connection) {
        Ok(lines) => {
            let problems: Vec<String> = lines
                .into_iter()
                .map(|line| line.line)
                .filter(|line| line != "ok")
                .collect();
            let summary = if problems.is_empty() {
                "quick_check: ok".to_owned()
            } else {
                let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
                format!(
                    "quick_check found {} problems: {} (restore the newest verified backup)",
                    problems.len(),
                    shown.join("; ")
                )
            };
            CheckResult::measured(
                name,
                thresholds,
                float(i64::try_from(problems.len()).unwrap_or(i64::MAX)),
                summary,
            )
        }
        Err(error) => {
            let message = error.to_string();
            let damaged = ["malformed", "not a database", "corrupt"]
                .iter()
                .any(|sign| message.contains(sign));
            let status = if damaged { Status::Critical } else { Status::Unknown };
            CheckResult::without_value(name, thresholds, status, format!("quick_check failed: {message}"))
        }
    }
}

/// `wal_size`: the bytes of the `-wal` file beside the database (0 when there is none).
fn wal_size(connection: &mut SqliteConnection, thresholds: Thresholds) -> QueryResult<CheckResult> {
    let name = CheckName::WalSize;
    let file = main_file(connection)?;
    if file.is_empty() {
        return Ok(CheckResult::without_value(
            name,
            thresholds,
            Status::Unknown,
            "the database has no file (in memory)",
        ));
    }
    let wal = format!("{file}-wal");
    let bytes = match std::fs::metadata(&wal) {
        Ok(metadata) => i64::try_from(metadata.len()).unwrap_or(i64::MAX),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => {
            return Ok(CheckResult::without_value(
                name,
                thresholds,
                Status::Unknown,
                format!("cannot read {wal}: {error}"),
            ));
        }
    };
    Ok(CheckResult::measured(
        name,
        thresholds,
        float(bytes),
        format!("{wal} holds {bytes} bytes (a reader that never ends keeps checkpoints from resetting it)"),
    ))
}

/// `free_pages`: pages on the free list as a percentage of all pages (`VACUUM` returns them).
fn free_pages(connection: &mut SqliteConnection, thresholds: Thresholds) -> QueryResult<CheckResult> {
    let pages = pages(connection)?;
    let percent = if pages.pages == 0 {
        0.0
    } else {
        float(pages.free) * 100.0 / float(pages.pages)
    };
    Ok(CheckResult::measured(
        CheckName::FreePages,
        thresholds,
        percent,
        format!(
            "{} of {} pages free ({percent:.1} %, {} bytes reclaimable by VACUUM)",
            pages.free,
            pages.pages,
            pages.free * pages.page_size
        ),
    ))
}
