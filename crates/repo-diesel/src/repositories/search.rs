//! The search condition of user lists, written per backend: the exact `lower(..) LIKE lower(..)`
//! check, narrowed on SQLite to the candidates of the FTS5 trigram index `users_search`.
//!
//! PostgreSQL answers the exact check itself from a trigram (`pg_trgm`) GIN index on the same
//! expressions; what it needs is a plan made for the pattern at hand (see `Narrowed`). SQLite
//! has no index for `LIKE '%…%'`, so a search of three characters or more is first looked up in
//! `users_search` (migrations `2026-12-01-000300_search_indexes` and `…000310_search_indexes_build`),
//! which holds every user's email and name exactly as stored, one token per three characters.
//! The lookup asks for every spelling that folds like the search (`fold_char`, the function the
//! exact check's `lower` runs on SQLite), so it finds every row the exact check keeps, whatever
//! case the row was written in and whichever connection wrote it; the exact check, which stays in
//! the query, then decides. The search is bound as one parameter, each spelling quoted as an FTS5
//! string, so no character of it is query syntax.
//!
//! SQLite plans a statement without knowing how many candidates a search has, so the candidates
//! filter users read in page order (a first page of a common search ends early) instead of
//! driving the statement (which would fetch and sort every candidate, seconds for a search most
//! users match), and are skipped altogether from `COMMON` candidates on.

use std::collections::HashMap;
use std::sync::LazyLock;

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;

use crate::schema::users;
use database::connection::MultiBackend;
use database::sql_types::fold_char;

/// `exact`, the search's own condition on `users`, narrowed on SQLite to the candidates of the
/// trigram index when `search` has a trigram to look up.
pub(super) fn narrowed<E>(exact: E, search: &str) -> Narrowed<E> {
    Narrowed {
        exact,
        candidates: candidate_query(search),
    }
}

/// The search condition: on PostgreSQL `exact` alone, in a statement that is never cached, so
/// that the server plans it for its pattern (a cached statement gets a generic plan after five
/// runs, which cannot tell a rare pattern, best found through the trigram index, from a common
/// one or one too short for trigrams, best found by reading users in page order: measured on a
/// million users, 417 ms and 3.8 s for pages a plan made for their pattern serves in under 1 ms).
/// On SQLite `((<count of candidates, at most COMMON>) >= COMMON OR users.id IN (<candidates>))
/// AND exact`.
#[derive(Debug, Clone)]
pub(super) struct Narrowed<E> {
    exact: E,
    /// The FTS5 query of the candidates; `None` for a search shorter than a trigram.
    candidates: Option<String>,
}

impl<E: Expression> Expression for Narrowed<E> {
    // The condition's own type; the SQLite candidates are combined with it by AND.
    type SqlType = E::SqlType;
}

impl<E: ValidGrouping<()>> ValidGrouping<()> for Narrowed<E> {
    type IsAggregate = E::IsAggregate;
}

impl<QS, E: AppearsOnTable<QS>> AppearsOnTable<QS> for Narrowed<E> {}

impl<QS, E: SelectableExpression<QS>> SelectableExpression<QS> for Narrowed<E> {}

impl<E> QueryId for Narrowed<E> {
    type QueryId = ();
    // The SQL depends on the backend and on whether the search has a trigram.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<E: QueryFragment<Pg>> QueryFragment<Pg> for Narrowed<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.exact.walk_ast(out)
    }
}

impl<E: QueryFragment<Sqlite>> QueryFragment<Sqlite> for Narrowed<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let Some(candidates) = &self.candidates else {
            return self.exact.walk_ast(out);
        };
        // SQLite evaluates the uncorrelated count once, and the IN list (built on first use) only
        // when the count is below the limit. users_search_keys gives each user the integer key
        // of its users_search row.
        out.push_sql("(((SELECT count(*) FROM (SELECT 1 FROM users_search WHERE users_search MATCH ");
        out.push_bind_param::<Text, String>(candidates)?;
        out.push_sql(" LIMIT ");
        out.push_bind_param::<BigInt, i64>(&COMMON)?;
        out.push_sql(")) >= ");
        out.push_bind_param::<BigInt, i64>(&COMMON)?;
        out.push_sql(" OR ");
        <users::id as QueryFragment<Sqlite>>::walk_ast(&users::id, out.reborrow())?;
        out.push_sql(
            " IN (SELECT user_id FROM users_search_keys WHERE key IN \
             (SELECT rowid FROM users_search WHERE users_search MATCH ",
        );
        out.push_bind_param::<Text, String>(candidates)?;
        out.push_sql("))) AND ");
        self.exact.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

impl<E> QueryFragment<MultiBackend> for Narrowed<E>
where
    E: QueryFragment<Pg> + QueryFragment<Sqlite>,
{
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        MultiBackend::walk_variant_ast(self, out)
    }
}

/// A search with at least this many candidates is common: SQLite then skips the candidates
/// and reads users in page order with the exact check alone, as without the index, where a
/// page of a common search ends early. Below it the candidates (at most this many keys, a few
/// milliseconds to collect) narrow that reading to a cheap membership test per row.
const COMMON: i64 = 10_000;

/// Characters in a token of the trigram tokenizer.
const TRIGRAM: usize = 3;

/// At most this many trigrams of the search are looked up: four (the first twelve characters)
/// leave few candidates besides the matches, and the exact check does the rest.
const MAX_TRIGRAMS: usize = 4;

/// A further trigram is looked up only while the query stays within this many spellings.
const MAX_SPELLINGS: usize = 256;

/// The FTS5 query whose rows include every row whose email or name contains `search` in the
/// exact check's sense (`fold_case` of the text contains `fold_case` of the search), or `None`
/// when `search` is shorter than a trigram (the trigram tokenizer cannot look those up).
///
/// The query is `("s1" OR "s2" …) AND (…)`: one group per non-overlapping trigram of the search,
/// from its start, and in each every spelling of the trigram that folds like it. A row the exact
/// check keeps contains, at each of those positions, a trigram that folds like the search's
/// (`fold_case` maps one character to one character, so positions line up), which is one of the
/// spellings, and the index holds every trigram of the stored text as a token.
fn candidate_query(search: &str) -> Option<String> {
    let characters: Vec<char> = search.chars().collect();
    if characters.len() < TRIGRAM {
        return None;
    }
    let mut groups = Vec::new();
    let mut spellings_so_far = 0;
    for trigram in characters.chunks_exact(TRIGRAM).take(MAX_TRIGRAMS) {
        let spellings = trigram_spellings(trigram);
        if !groups.is_empty() && spellings_so_far + spellings.len() > MAX_SPELLINGS {
            break;
        }
        spellings_so_far += spellings.len();
        let quoted: Vec<String> = spellings.iter().map(|spelling| fts5_string(spelling)).collect();
        groups.push(format!("({})", quoted.join(" OR ")));
    }
    Some(groups.join(" AND "))
}

/// Every string of `trigram.len()` characters that `fold_case` maps to the fold of `trigram`.
fn trigram_spellings(trigram: &[char]) -> Vec<String> {
    trigram.iter().fold(vec![String::new()], |prefixes, &character| {
        let spellings = spellings_of(character);
        prefixes
            .iter()
            .flat_map(|prefix| {
                spellings.iter().map(move |&spelling| {
                    let mut longer = prefix.clone();
                    longer.push(spelling);
                    longer
                })
            })
            .collect()
    })
}

/// `text` as an FTS5 string: in double quotes, a double quote doubled. Inside a string FTS5
/// reads nothing as syntax (`*`, `^`, `:`, parentheses, `AND`, `OR`, `NOT`, `NEAR` included).
fn fts5_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Every character whose `fold_char` is that of `character`, itself included.
fn spellings_of(character: char) -> Vec<char> {
    let folded = fold_char(character);
    FOLDED_FROM
        .get(&folded)
        .cloned()
        // Nothing else folds to it: then it folds to itself (otherwise the map would list it).
        .unwrap_or_else(|| vec![character])
}

/// For every character that another character folds to: all the characters that fold to it,
/// itself included when it folds to itself. Built once from every Unicode scalar value, so no
/// spelling can be missing, whatever Unicode version the standard library follows.
static FOLDED_FROM: LazyLock<HashMap<char, Vec<char>>> = LazyLock::new(|| {
    let mut folded_from: HashMap<char, Vec<char>> = HashMap::new();
    for character in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        let folded = fold_char(character);
        if folded != character {
            folded_from.entry(folded).or_default().push(character);
        }
    }
    for (folded, characters) in &mut folded_from {
        if fold_char(*folded) == *folded {
            characters.push(*folded);
        }
        characters.sort_unstable();
    }
    folded_from
});

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use diesel::connection::SimpleConnection as _;
    use diesel::prelude::*;

    use super::*;
    use database::Backend;
    use database::sql_types::fold_case;
    use migrator::MigrationSet;

    #[track_caller]
    fn check_spellings(character: char, expected: &[char]) {
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(spellings_of(character), expected, "spellings of {character:?}");
    }

    #[test]
    fn spellings_are_every_character_that_folds_alike() {
        // Kelvin sign, dotted capital I, German capital sharp s, Ångström sign, ohm sign.
        check_spellings('k', &['k', 'K', '\u{212A}']);
        check_spellings('\u{212A}', &['k', 'K', '\u{212A}']);
        check_spellings('I', &['i', 'I', '\u{130}']);
        check_spellings('ß', &['ß', '\u{1E9E}']);
        check_spellings('å', &['å', 'Å', '\u{212B}']);
        check_spellings('Ω', &['ω', 'Ω', '\u{2126}']);
        // A final sigma folds to itself, not to σ (the exact check tells them apart too).
        check_spellings('σ', &['σ', 'Σ']);
        check_spellings('ς', &['ς']);
        check_spellings('ı', &['ı']);
        check_spellings('7', &['7']);
        check_spellings('%', &['%']);
        for character in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let spellings = spellings_of(character);
            assert!(spellings.contains(&character), "{character:?}");
            assert!(spellings.len() <= 4, "{character:?}: {spellings:?}");
        }
    }

    #[test]
    fn a_search_shorter_than_a_trigram_has_no_candidate_query() {
        assert_eq!(candidate_query(""), None);
        assert_eq!(candidate_query("ab"), None);
        assert_eq!(candidate_query("ΣΣ"), None);
        assert_eq!(candidate_query("1%"), None);
    }

    #[test]
    fn candidate_queries_quote_every_spelling() {
        assert_eq!(candidate_query("a1%").as_deref(), Some(r#"("A1%" OR "a1%")"#));
        assert_eq!(
            candidate_query(r#"1"2"#).as_deref(),
            Some(r#"("1""2")"#),
            "a double quote is doubled"
        );
        assert_eq!(
            candidate_query("2.5*^:(NEAR AND").as_deref(),
            Some(
                r#"("2.5") AND ("*^:") AND ("(NE" OR "(Ne" OR "(nE" OR "(ne") AND ("AR " OR "Ar " OR "aR " OR "ar ")"#
            ),
            "at most four trigrams, syntax characters inside strings"
        );
        let long = "x".repeat(200);
        assert_eq!(
            candidate_query(&long).map(|query| query.matches(" AND ").count()),
            Some(3)
        );
    }

    /// An in-memory database with the SQLite migrations applied.
    fn migrated_memory_database() -> SqliteConnection {
        let mut connection = SqliteConnection::establish(":memory:").expect("in-memory database");
        for migration in MigrationSet::embedded(Backend::Sqlite).migrations() {
            connection.batch_execute(migration.up_sql()).expect("migration");
        }
        connection
    }

    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = BigInt)]
        rowid: i64,
    }

    fn matching_rows(connection: &mut SqliteConnection, query: &str) -> BTreeSet<i64> {
        diesel::sql_query("SELECT rowid FROM users_search WHERE users_search MATCH ?")
            .bind::<Text, _>(query)
            .load::<Key>(connection)
            .unwrap_or_else(|error| panic!("{query}: {error}"))
            .into_iter()
            .map(|key| key.rowid)
            .collect()
    }

    #[derive(QueryableByName)]
    struct Term {
        #[diesel(sql_type = Text)]
        term: String,
    }

    /// The index must hold every trigram of the stored text as the token that the trigram's
    /// FTS5 string looks up, for every character there is: checked for all of Unicode, stored in
    /// rows of consecutive scalar values, by reading the index's terms (`fts5vocab`). FTS5 reads
    /// U+FFFE and U+FFFF as U+FFFD, in the index and in queries alike; the trigrams holding them
    /// are looked up by query instead.
    #[test]
    fn every_trigram_of_every_character_is_indexed_as_written() {
        const ROW: usize = 1_000;
        let mut connection = migrated_memory_database();
        let characters: Vec<char> = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .filter(|&character| character != '\0')
            .collect();
        connection.batch_execute("BEGIN").expect("begin");
        for (key, row) in characters.chunks(ROW).enumerate() {
            diesel::sql_query("INSERT INTO users_search (rowid, email, full_name) VALUES (?, '', ?)")
                .bind::<BigInt, _>(i64::try_from(key).expect("few rows"))
                .bind::<Text, _>(row.iter().collect::<String>())
                .execute(&mut connection)
                .expect("insert");
        }
        connection.batch_execute("COMMIT").expect("commit");
        connection
            .batch_execute("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, users_search, 'row')")
            .expect("vocabulary");
        let terms: HashSet<String> = diesel::sql_query("SELECT term FROM temp.terms")
            .load::<Term>(&mut connection)
            .expect("terms")
            .into_iter()
            .map(|term| term.term)
            .collect();
        let mut trigrams = 0;
        for (key, row) in characters.chunks(ROW).enumerate() {
            for trigram in row.windows(TRIGRAM) {
                trigrams += 1;
                let text: String = trigram.iter().collect();
                if trigram
                    .iter()
                    .any(|&character| matches!(character, '\u{FFFE}' | '\u{FFFF}'))
                {
                    let found = matching_rows(&mut connection, &fts5_string(&text));
                    assert!(found.contains(&i64::try_from(key).expect("few rows")), "{text:?}");
                } else {
                    assert!(terms.contains(&text), "{text:?} is not indexed as written");
                }
            }
        }
        assert!(trigrams > 1_100_000, "{trigrams}");
    }

    /// For every character that has other spellings, a row written in any of them is a
    /// candidate of a search typed in any of them, exactly as the exact check finds it.
    #[test]
    fn every_spelling_finds_every_spelling() {
        let mut connection = migrated_memory_database();
        let classes: BTreeSet<Vec<char>> = (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .map(spellings_of)
            .filter(|spellings| spellings.len() > 1)
            .collect();
        assert!(classes.len() > 1_000, "{}", classes.len());
        let mut rows: HashMap<char, i64> = HashMap::new();
        connection.batch_execute("BEGIN").expect("begin");
        for (key, character) in classes.iter().flatten().enumerate() {
            let key = i64::try_from(key).expect("few rows");
            diesel::sql_query("INSERT INTO users_search (rowid, email, full_name) VALUES (?, ?, '')")
                .bind::<BigInt, _>(key)
                .bind::<Text, _>(format!("{character}{character}{character}"))
                .execute(&mut connection)
                .expect("insert");
            rows.insert(*character, key);
        }
        connection.batch_execute("COMMIT").expect("commit");
        for class in &classes {
            let expected: BTreeSet<i64> = class.iter().map(|character| rows[character]).collect();
            for &typed in class {
                let search = format!("{typed}{typed}{typed}");
                let query = candidate_query(&search).expect("a trigram");
                let found = matching_rows(&mut connection, &query);
                // The exact check keeps every row whose fold contains the search's fold.
                for member in class {
                    let stored = format!("{member}{member}{member}");
                    assert!(fold_case(&stored).contains(&fold_case(&search)));
                }
                assert_eq!(found, expected, "search {search:?}");
            }
        }
    }
}
