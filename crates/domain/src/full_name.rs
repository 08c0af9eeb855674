//! `FullName`: a display name the database's name checks accept.

use crate::ValidationError;

/// The longest name the schema stores (`chk_users_full_name_length`).
pub const MAX_FULL_NAME_LENGTH: usize = 200;

/// A person's name: trimmed, 1 to 200 characters, no control characters. Any script is fine.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FullName(String);

impl FullName {
    /// Parses a name, trimming surrounding white space.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(ValidationError::new("full_name", "must not be empty"));
        }
        if name.chars().count() > MAX_FULL_NAME_LENGTH {
            return Err(ValidationError::new(
                "full_name",
                format!("must be at most {MAX_FULL_NAME_LENGTH} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::new("full_name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// Wraps a name read back from the `users` table, without parsing it again.
    ///
    /// For stored rows only, never for input: every name this project writes went through
    /// [`FullName::parse`] first, and the database's own checks hold every other writer to 1 to
    /// 200 characters (`chk_users_full_name_length`) without surrounding white space
    /// (`chk_users_full_name_trimmed`). Control characters inside a name are not checked by the
    /// database: a name written by hand with one is returned as stored.
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }
}

crate::text::parsed_text!(FullName);

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, &str>) {
        let actual = FullName::parse(input)
            .map(|name| name.as_str().to_owned())
            .map_err(|error| error.to_string());
        assert_eq!(actual, expected.map(str::to_owned).map_err(str::to_owned), "{input:?}");
    }

    #[test]
    fn a_stored_name_is_taken_as_it_is() {
        let parsed = FullName::parse("Zoë O'Brien").expect("valid");
        assert_eq!(FullName::from_stored(parsed.as_str().to_owned()), parsed);
    }

    #[test]
    fn parses_names() {
        check(" Ann Example ", Ok("Ann Example"));
        check("Zoë O'Brien-Ñúñez", Ok("Zoë O'Brien-Ñúñez"));
        check("山田 太郎", Ok("山田 太郎"));
        check("Robert'); DROP TABLE users;--", Ok("Robert'); DROP TABLE users;--"));
        check("", Err("full_name: must not be empty"));
        check("   ", Err("full_name: must not be empty"));
        check("Ann\nExample", Err("full_name: must not contain control characters"));
        check(&"é".repeat(200), Ok(&"é".repeat(200)));
        check(&"é".repeat(201), Err("full_name: must be at most 200 characters"));
    }
}
