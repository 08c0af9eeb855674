//! Identifiers: UUIDv7, so that ids sort by creation time and index inserts stay append-mostly.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::ValidationError;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID, as read from storage or the wire.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        /// Parses the hyphenated form (or any form [`Uuid::parse_str`] reads); anything else is a
        /// [`ValidationError`] on the field `id`.
        impl FromStr for $name {
            type Err = ValidationError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|error| ValidationError::new("id", format!("is not a UUID ({error})")))
            }
        }
    };
}

id_type!(
    /// Identifies a user.
    UserId
);
id_type!(
    /// Identifies an attendance record.
    AttendanceId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_ordered_by_creation() {
        let first = UserId::new();
        let second = UserId::new();
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert!(first < second);
    }

    #[test]
    fn ids_round_trip_through_text() {
        let id = AttendanceId::new();
        assert_eq!(id.to_string().parse::<AttendanceId>(), Ok(id));
        assert!("not-a-uuid".parse::<AttendanceId>().is_err());
    }

    #[test]
    fn a_bad_uuid_is_a_typed_error() {
        let error = "not-a-uuid".parse::<UserId>().expect_err("not a UUID");
        assert_eq!(error.field, "id");
        assert!(error.to_string().starts_with("id: is not a UUID ("), "{error}");
        let error = "0190c4a2-7d3e-7abc-8def-0123456789a"
            .parse::<AttendanceId>()
            .expect_err("one digit short");
        assert!(error.to_string().starts_with("id: is not a UUID ("), "{error}");
    }

    #[test]
    fn ids_serialise_as_their_uuid_string() {
        let id = UserId::new();
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<UserId>(&json).expect("deserialise"), id);
        assert!(serde_json::from_str::<AttendanceId>("\"not-a-uuid\"").is_err());
    }
}
