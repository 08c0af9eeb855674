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
