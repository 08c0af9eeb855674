//! `Email`: a parsed, lower-cased address that the database's email checks accept.

use validator::ValidateEmail;

use crate::ValidationError;

/// The longest address the schema stores (`chk_users_email_length`).
pub const MAX_EMAIL_LENGTH: usize = 254;

/// An email address: trimmed, lower-cased, at most 254 characters, in a shape the validator
/// crate's HTML5 rule accepts. Two addresses that differ only in case are the same user.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let email = input.trim().to_lowercase();
        if email.chars().count() > MAX_EMAIL_LENGTH {
            return Err(ValidationError::new(
                "email",
                format!("must be at most {MAX_EMAIL_LENGTH} characters"),
            ));
        }
        if !email.validate_email() || email.chars().any(char::is_whitespace) {
            return Err(ValidationError::new("email", "is not a valid email address"));
        }
        Ok(Self(email))
    }

    /// Wraps an address read back from the `users` table, without parsing it again.
    ///
    /// For stored rows only, never for input: every address this project writes went through
    /// [`Email::parse`] first, and the database's own checks hold every other writer to lower
    /// case (`chk_users_email_lowercase`), 3 to 254 characters (`chk_users_email_length`), and an
    /// `@` with text on both sides, no second `@` and no space (`chk_users_email_format`). An
    /// address written by hand that passes those checks but not the HTML5 rule of `parse` is
    /// returned as stored rather than refused (re-checking every row cost about 6 % of a point
    /// read, in the validator crate's regular expression).
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }
}

crate::text::parsed_text!(Email);

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, &str>) {
        let actual = Email::parse(input)
            .map(|email| email.as_str().to_owned())
            .map_err(|error| error.to_string());
        assert_eq!(actual, expected.map(str::to_owned).map_err(str::to_owned), "{input:?}");
    }

    #[test]
    fn parses_and_normalises() {
        check("Ann@Example.COM", Ok("ann@example.com"));
        check("  bob@example.com\n", Ok("bob@example.com"));
        check("o'brien+tag@example.co.uk", Ok("o'brien+tag@example.co.uk"));
        check("", Err("email: is not a valid email address"));
        check("no-at-sign", Err("email: is not a valid email address"));
        check("two@@example.com", Err("email: is not a valid email address"));
        check("sp ace@example.com", Err("email: is not a valid email address"));
        check(
            "'; DROP TABLE users; --@example.com",
            Err("email: is not a valid email address"),
        );
        check(
            &format!("{}@example.com", "a".repeat(243)),
            Err("email: must be at most 254 characters"),
        );
    }

    #[test]
    fn a_stored_address_is_taken_as_it_is() {
        let parsed = Email::parse("ann@example.com").expect("valid");
        assert_eq!(Email::from_stored(parsed.as_str().to_owned()), parsed);
    }

    #[test]
    fn deserialises_through_the_parser() {
        let email: Email = serde_json::from_str("\"Ann@Example.com\"").expect("valid");
        assert_eq!(email.as_str(), "ann@example.com");
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
        assert_eq!(serde_json::to_string(&email).expect("serialise"), "\"ann@example.com\"");
    }
}
