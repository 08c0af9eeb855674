//! Accountability: who does an operation (`Actor`), the request it belongs to (`CorrelationId`),
//! both carried with every unit of work (`AuditContext`), and what the audit log holds
//! (`AuditEntry`, about an `AuditEntity`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{UserId, ValidationError};

/// The value the audit log shows for a secret field (a password) that changed: the field is
/// named, its value never is.
pub const REDACTED: &str = "[redacted]";

/// The longest operator or service name an [`Actor`] takes, in characters.
pub const MAX_ACTOR_NAME_LENGTH: usize = 100;

/// The longest [`CorrelationId`], in characters.
pub const MAX_CORRELATION_ID_LENGTH: usize = 128;

/// The actions the repositories write, as `<entity>.<verb>`. The operator commands write their
/// own (`roles.setup`, `credentials.rotate`, `credentials.expire`, `audit_log.retention_purge`;
/// see the `security` crate).
pub mod actions {
    /// A user registered (`UserRepository::create`).
    pub const USER_REGISTER: &str = "user.register";
    /// A user's email, name or password changed (`UserRepository::update`); the changed fields
    /// are listed, a password as `[redacted]`.
    pub const USER_UPDATE: &str = "user.update";
    /// A stored password hash was replaced by one with the current parameters at sign-in.
    pub const USER_PASSWORD_REHASH: &str = "user.password_rehash";
    /// A user was deactivated.
    pub const USER_DEACTIVATE: &str = "user.deactivate";
    /// A user was reactivated.
    pub const USER_REACTIVATE: &str = "user.reactivate";
    /// A user (and their attendance) was soft-deleted.
    pub const USER_SOFT_DELETE: &str = "user.soft_delete";
    /// A soft-deleted user (and the attendance that went with them) was restored.
    pub const USER_RESTORE: &str = "user.restore";
    /// A user was deleted for good.
    pub const USER_PURGE: &str = "user.purge";
    /// A user soft-deleted before the retention cutoff was deleted for good.
    pub const USER_RETENTION_PURGE: &str = "user.retention_purge";
}

/// Who did an operation, as the audit log stores it: `user:<uuid>`, `operator:<name>`,
/// `service:<name>`, or `none` when the caller named no one (the entry is written all the same).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// A signed-in user acting through the application.
    #[must_use]
    pub fn user(id: UserId) -> Self {
        Self(format!("user:{id}"))
    }

    /// A person operating the system by hand or through a tool (`dbctl`): their name.
    pub fn operator(name: &str) -> Result<Self, ValidationError> {
        Ok(Self(format!("operator:{}", actor_name(name)?)))
    }

    /// A process acting on its own behalf (a scheduled job, another service): its name.
    pub fn service(name: &str) -> Result<Self, ValidationError> {
        Ok(Self(format!("service:{}", actor_name(name)?)))
    }

    /// No actor was named; recorded as such, never skipped.
    #[must_use]
    pub fn none() -> Self {
        Self("none".to_owned())
    }

    /// Wraps an actor read back from the audit log (the schema's checks bound its form).
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The stored form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for [`Actor::none`].
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.0 == "none"
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1 to [`MAX_ACTOR_NAME_LENGTH`] characters, none of them a control character or whitespace.
fn actor_name(name: &str) -> Result<&str, ValidationError> {
    let length = name.chars().count();
    if length == 0 || length > MAX_ACTOR_NAME_LENGTH {
        return Err(ValidationError::new(
            "actor",
            format!("must be 1 to {MAX_ACTOR_NAME_LENGTH} characters"),
        ));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            "actor",
            "must not contain control characters or whitespace",
        ));
    }
    Ok(name)
}

/// The request an operation belongs to (a request id from the HTTP layer, a job id): 1 to
/// [`MAX_CORRELATION_ID_LENGTH`] visible ASCII characters, so that it cannot forge lines in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Checks the rules.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        if input.is_empty() || input.len() > MAX_CORRELATION_ID_LENGTH {
            return Err(ValidationError::new(
                "correlation_id",
                format!("must be 1 to {MAX_CORRELATION_ID_LENGTH} characters"),
            ));
        }
        if !input.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "correlation_id",
                "must be visible ASCII characters without spaces",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who acts, and for which request: passed with every unit of work, and written into the audit
/// entry of every sensitive operation in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    actor: Actor,
    correlation_id: Option<CorrelationId>,
}

impl AuditContext {
    /// `actor`, with no correlation id.
    #[must_use]
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            correlation_id: None,
        }
    }

    /// No actor named: entries record the actor `none`. Repository calls made outside a unit of
    /// work run with this context.
    #[must_use]
    pub fn unattributed() -> Self {
        Self::new(Actor::none())
    }

    /// This context for the request `correlation_id`.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: CorrelationId) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Who acts.
    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The request, if the caller named one.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&CorrelationId> {
        self.correlation_id.as_ref()
    }
}

/// What an audit entry is about: a kind (`user`, `role`, `audit_log`) and an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AuditEntity {
    /// The kind of entity.
    pub kind: String,
    /// Its id.
    pub id: String,
}

impl AuditEntity {
    /// A user.
    #[must_use]
    pub fn user(id: UserId) -> Self {
        Self {
            kind: "user".to_owned(),
            id: id.to_string(),
        }
    }

    /// Any entity: `kind` of 1 to 64 characters, `id` of 1 to 200.
    pub fn new(kind: &str, id: &str) -> Result<Self, ValidationError> {
        if kind.is_empty() || kind.chars().count() > 64 {
            return Err(ValidationError::new("entity_type", "must be 1 to 64 characters"));
        }
        if id.is_empty() || id.chars().count() > 200 {
            return Err(ValidationError::new("entity_id", "must be 1 to 200 characters"));
        }
        if kind.contains('\0') || id.contains('\0') {
            return Err(ValidationError::new("entity", "must not contain NUL characters"));
        }
        Ok(Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// One entry of the audit log, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Identity: a UUIDv7.
    pub id: uuid::Uuid,
    /// When the operation happened.
    pub occurred_at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// What was done, `<entity>.<verb>` (see [`actions`]).
    pub action: String,
    /// What it was done to.
    pub entity: AuditEntity,
    /// The changed fields before, as a JSON object; a secret's value is [`REDACTED`].
    pub old_values: Option<serde_json::Value>,
    /// The changed fields after, as a JSON object; a secret's value is [`REDACTED`].
    pub new_values: Option<serde_json::Value>,
    /// The request it belonged to.
    pub correlation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_have_one_stored_form_each() {
        let id = UserId::new();
        assert_eq!(Actor::user(id).as_str(), format!("user:{id}"));
        assert_eq!(Actor::operator("ann").expect("valid").as_str(), "operator:ann");
        assert_eq!(
            Actor::service("nightly-purge").expect("valid").as_str(),
            "service:nightly-purge"
        );
        assert!(Actor::none().is_none());
        for bad in ["", "two words", "line\nbreak", &"x".repeat(101)] {
            assert_eq!(Actor::operator(bad).expect_err("invalid").field, "actor", "{bad:?}");
        }
    }

    #[test]
    fn correlation_ids_are_visible_ascii() {
        assert_eq!(CorrelationId::parse("req-42/a").expect("valid").as_str(), "req-42/a");
        for bad in ["", "with space", "new\nline", "é", &"x".repeat(129)] {
            assert_eq!(
                CorrelationId::parse(bad).expect_err("invalid").field,
                "correlation_id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn contexts_carry_the_actor_and_the_request() {
        let context = AuditContext::new(Actor::operator("ann").expect("valid"))
            .with_correlation_id(CorrelationId::parse("req-1").expect("valid"));
        assert_eq!(context.actor().as_str(), "operator:ann");
        assert_eq!(context.correlation_id().map(CorrelationId::as_str), Some("req-1"));
        assert!(AuditContext::unattributed().actor().is_none());
        assert!(AuditEntity::new("", "x").is_err());
        assert!(AuditEntity::new("user", "").is_err());
    }
}
