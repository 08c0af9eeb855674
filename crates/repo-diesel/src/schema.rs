//! The tables, written by hand: `diesel print-schema` emits one backend's types, while the shared
//! code needs `database::sql_types`. A test inserts and reads back every column on both backends.

#![expect(
    missing_docs,
    reason = "columns are documented by COMMENT ON in the migrations and in docs/SCHEMA.md"
)]

diesel::table! {
    use diesel::sql_types::{Bool, Nullable, Text};
    use database::sql_types::{Instant, Uuid};

    /// People who can sign in and record attendance.
    users (id) {
        id -> Uuid,
        email -> Text,
        full_name -> Text,
        hashed_password -> Text,
        is_active -> Bool,
        created_at -> Instant,
        updated_at -> Instant,
        deleted_at -> Nullable<Instant>,
        deletion_batch_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    use diesel::sql_types::Nullable;
    use database::sql_types::{Instant, Uuid};

    /// Check-ins and check-outs of users.
    attendance (id) {
        id -> Uuid,
        user_id -> Uuid,
        check_in_time -> Instant,
        check_out_time -> Nullable<Instant>,
        created_at -> Instant,
        updated_at -> Instant,
        deleted_at -> Nullable<Instant>,
        deletion_batch_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use database::sql_types::{Instant, Json, Uuid};

    /// Append-only record of sensitive operations.
    audit_log (id) {
        id -> Uuid,
        occurred_at -> Instant,
        actor -> Text,
        action -> Text,
        entity_type -> Text,
        entity_id -> Text,
        old_values -> Nullable<Json>,
        new_values -> Nullable<Json>,
        correlation_id -> Nullable<Text>,
    }
}

diesel::joinable!(attendance -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, attendance, audit_log);
