//! Query pieces diesel's DSL lacks: the row-value comparison that keyset pages seek with, and
//! `EXPLAIN`, whose row estimate is the cheap total of an offset page on PostgreSQL.

use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Bool, Text};

/// Which way a row-value comparison goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// `(a, b) > (x, y)`
    After,
    /// `(a, b) < (x, y)`
    Before,
}

/// `(a, b) > (x, y)` or `(a, b) < (x, y)`: true when the row `(a, b)` sorts after (before)
/// `(x, y)` in `ORDER BY a, b`. Both PostgreSQL and SQLite seek an index on `(a, b)` to the
/// position with it; the equivalent `a > x OR (a = x AND b > y)` makes PostgreSQL read and
/// discard every row before the position.
#[derive(Debug, Clone, Copy)]
pub struct RowCompare<A, B, X, Y> {
    columns: (A, B),
    values: (X, Y),
    order: RowOrder,
}

/// `(a, b) > (x, y)` or `(a, b) < (x, y)`, as `order` says.
pub fn row_compare<A, B, X, Y>(columns: (A, B), order: RowOrder, values: (X, Y)) -> RowCompare<A, B, X, Y> {
    RowCompare { columns, values, order }
}

impl<A, B, X, Y> Expression for RowCompare<A, B, X, Y> {
    type SqlType = Bool;
}

impl<A, B, X, Y> ValidGrouping<()> for RowCompare<A, B, X, Y> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<QS, A, B, X, Y> AppearsOnTable<QS> for RowCompare<A, B, X, Y>
where
    A: AppearsOnTable<QS>,
    B: AppearsOnTable<QS>,
    X: AppearsOnTable<QS>,
    Y: AppearsOnTable<QS>,
{
}

impl<QS, A, B, X, Y> SelectableExpression<QS> for RowCompare<A, B, X, Y>
where
    A: SelectableExpression<QS>,
    B: SelectableExpression<QS>,
    X: SelectableExpression<QS>,
    Y: SelectableExpression<QS>,
{
}

impl<A, B, X, Y> QueryId for RowCompare<A, B, X, Y> {
    type QueryId = ();
    // The operator is a run-time value: the SQL differs between instances of one type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB, A, B, X, Y> QueryFragment<DB> for RowCompare<A, B, X, Y>
where
    DB: Backend,
    A: QueryFragment<DB>,
    B: QueryFragment<DB>,
    X: QueryFragment<DB>,
    Y: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("((");
        self.columns.0.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        self.columns.1.walk_ast(out.reborrow())?;
        out.push_sql(match self.order {
            RowOrder::After => ") > (",
            RowOrder::Before => ") < (",
        });
        self.values.0.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        self.values.1.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

/// `EXPLAIN (FORMAT JSON) <query>` on PostgreSQL: plans the query, with its bound parameters,
/// without running it. The one row is the plan as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Explain<Q>(pub Q);

impl<Q> Query for Explain<Q> {
    type SqlType = Text;
}

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend, Q: QueryFragment<DB>> QueryFragment<DB> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("EXPLAIN (FORMAT JSON) ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q, C> diesel::RunQueryDsl<C> for Explain<Q> {}

/// The planner's row estimate of the top plan node in `EXPLAIN (FORMAT JSON)` output: its
/// first `"Plan Rows"`. `None` when the text holds none.
#[must_use]
pub fn planned_rows(plan: &str) -> Option<u64> {
    const KEY: &str = "\"Plan Rows\":";
    let after = &plan[plan.find(KEY)? + KEY.len()..];
    let digits: String = after
        .trim_start()
        .chars()
        .take_while(|character| character.is_ascii_digit() || *character == '.')
        .collect();
    // The planner prints a whole number; a fraction would only be rounded down.
    digits.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_top_nodes_row_estimate() {
        let plan = r#"[{"Plan": {"Node Type": "Limit", "Plan Rows": 96965, "Plans": [{"Plan Rows": 3}]}}]"#;
        assert_eq!(planned_rows(plan), Some(96_965));
        assert_eq!(planned_rows(r#"[{"Plan": {"Plan Rows":   12.0}}]"#), Some(12));
        assert_eq!(planned_rows("[]"), None);
        assert_eq!(planned_rows(r#"{"Plan Rows": "x"}"#), None);
    }
}
