//! Users: the entity as stored, and the inputs that create and change one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::{Email, FullName, Password, PasswordHash, UserId, ValidationError};

/// A user as stored. Serialises without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Identity.
    pub id: UserId,
    /// Sign-in address, unique among live users.
    pub email: Email,
    /// Display name.
    pub full_name: FullName,
    /// argon2id hash of the password; never serialised.
    // A hash in a JSON answer can be cracked offline. `PasswordHash` implements no `Serialize`,
    // so without this `skip` the derive does not compile: the hash cannot slip into JSON.
    #[serde(skip)]
    pub password_hash: PasswordHash,
    /// False while deactivated: the user keeps their data but may not check in.
    pub is_active: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// When the user last changed.
    pub updated_at: DateTime<Utc>,
    /// When the user was soft-deleted, if they were.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl User {
    /// Whether the user is soft-deleted.
    #[must_use]
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// A user to create: already validated, the password already hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Sign-in address.
    pub email: Email,
    /// Display name.
    pub full_name: FullName,
    /// argon2id hash of the password.
    pub password_hash: PasswordHash,
}

/// A partial update of a user: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    /// A new sign-in address.
    pub email: Option<Email>,
    /// A new display name.
    pub full_name: Option<FullName>,
    /// A new password hash.
    pub password_hash: Option<PasswordHash>,
}

impl UserChanges {
    /// True when the update changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.full_name.is_none() && self.password_hash.is_none()
    }
}

/// A registration as received (for example as JSON), checked with the validator crate. The rules
/// are those of [`Email`], [`FullName`] and [`Password`].
#[derive(Clone, Deserialize, Validate)]
pub struct RegisterUser {
    /// Sign-in address.
    #[validate(custom(function = "validate_email"))]
    pub email: String,
    /// Display name.
    #[validate(custom(function = "validate_full_name"))]
    pub full_name: String,
    /// Clear password; never shown in `Debug`.
    #[validate(custom(function = "validate_password"))]
    pub password: String,
}

impl std::fmt::Debug for RegisterUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterUser")
            .field("email", &self.email)
            .field("full_name", &self.full_name)
            .field("password", &"***")
            .finish()
    }
}

impl RegisterUser {
    /// The typed values, or the first rule broken.
    pub fn parse(&self) -> Result<(Email, FullName, Password), ValidationError> {
        Ok((
            Email::parse(&self.email)?,
            FullName::parse(&self.full_name)?,
            Password::parse(&self.password)?,
        ))
    }
}

/// A change of profile as received: absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, Validate)]
pub struct UpdateUser {
    /// A new sign-in address.
    #[validate(custom(function = "validate_email"))]
    pub email: Option<String>,
    /// A new display name.
    #[validate(custom(function = "validate_full_name"))]
    pub full_name: Option<String>,
}

impl UpdateUser {
    /// The typed changes, or the first rule broken.
    pub fn parse(&self) -> Result<UserChanges, ValidationError> {
        Ok(UserChanges {
            email: self.email.as_deref().map(Email::parse).transpose()?,
            full_name: self.full_name.as_deref().map(FullName::parse).transpose()?,
            password_hash: None,
        })
    }
}

fn to_validator(error: ValidationError) -> validator::ValidationError {
    validator::ValidationError::new(error.field).with_message(error.message.into())
}

fn validate_email(value: &str) -> Result<(), validator::ValidationError> {
    Email::parse(value).map(drop).map_err(to_validator)
}

fn validate_full_name(value: &str) -> Result<(), validator::ValidationError> {
    FullName::parse(value).map(drop).map_err(to_validator)
}

fn validate_password(value: &str) -> Result<(), validator::ValidationError> {
    Password::parse(value).map(drop).map_err(to_validator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_validated_field_by_field() {
        let input: RegisterUser =
            serde_json::from_str(r#"{"email": "not-an-email", "full_name": " ", "password": "short"}"#).expect("json");
        let errors = input.validate().expect_err("invalid");
        let field_errors = errors.field_errors();
        let mut fields: Vec<&str> = field_errors.keys().map(AsRef::as_ref).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["email", "full_name", "password"]);
        assert!(
            !format!("{input:?}").contains("short"),
            "the password stays out of Debug"
        );

        let input: RegisterUser =
            serde_json::from_str(r#"{"email": "Ann@Example.com", "full_name": "Ann", "password": "long enough"}"#)
                .expect("json");
        assert!(input.validate().is_ok());
        let (email, name, _password) = input.parse().expect("valid");
        assert_eq!((email.as_str(), name.as_str()), ("ann@example.com", "Ann"));
    }

    #[test]
    fn an_update_parses_only_what_it_has() {
        let update: UpdateUser = serde_json::from_str(r#"{"full_name": "Ann B"}"#).expect("json");
        assert!(update.validate().is_ok());
        let changes = update.parse().expect("valid");
        assert_eq!(
            changes.full_name.map(|name| name.as_str().to_owned()).as_deref(),
            Some("Ann B")
        );
        assert!(changes.email.is_none());
        assert!(UpdateUser::default().parse().expect("empty").is_empty());
    }

    #[test]
    fn a_user_serialises_without_its_hash() {
        let hash = Password::parse("long enough").expect("valid").hash().expect("hash");
        let user = User {
            id: UserId::new(),
            email: Email::parse("ann@example.com").expect("valid"),
            full_name: FullName::parse("Ann").expect("valid"),
            password_hash: hash.clone(),
            is_active: true,
            created_at: crate::time::now(),
            updated_at: crate::time::now(),
            deleted_at: None,
        };
        let json = serde_json::to_string(&user).expect("json");
        assert!(!json.contains("argon2") && !json.contains("password"), "{json}");
        assert!(!format!("{user:?}").contains(hash.as_phc()));
    }
}
