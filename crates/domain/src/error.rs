//! The one error of this crate: a value that does not satisfy a rule, naming the field.

/// A value broke a rule. `field` names the input field, so an API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The input field at fault, for example `email`.
    pub field: &'static str,
    /// What is wrong, lower-case, without echoing secrets.
    pub message: String,
}

impl ValidationError {
    /// An error on `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
