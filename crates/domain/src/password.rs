//! Passwords: `Password`, a clear password that is never shown or stored, and `PasswordHash`, its
//! argon2id hash, which is stored but never serialised or shown.

use std::fmt;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::ValidationError;

// The cheap test hash must never reach a deployed binary: a build without debug assertions
// (`cargo build --release`, `cargo bench`) stops here.
#[cfg(all(feature = "insecure-test-hash", not(debug_assertions)))]
compile_error!(
    "domain's `insecure-test-hash` feature makes password hashes cheap to crack: enable it in \
     [dev-dependencies] only, never in a release build"
);

/// The argon2id parameters every new hash gets: 19 MiB of memory (m = 19456 KiB), 2 passes
/// (t = 2), 1 lane (p = 1), a 32-byte output and a 16-byte random salt. This is the second
/// configuration of the OWASP Password Storage Cheat Sheet ("m=19456 (19 MiB), t=2, p=1"), and
/// the `argon2` crate's `Params::DEFAULT`; a test holds the two together. A stored hash with
/// weaker parameters is replaced at the next successful sign-in ([`PasswordHash::needs_rehash`]).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Passes of the current parameters: see [`ARGON2_MEMORY_KIB`].
pub const ARGON2_ITERATIONS: u32 = 2;
/// Lanes of the current parameters: see [`ARGON2_MEMORY_KIB`].
pub const ARGON2_PARALLELISM: u32 = 1;

/// The shortest password accepted (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LENGTH: usize = 8;
/// The longest password accepted: long enough for passphrases, short enough that hashing cannot
/// be abused to burn CPU.
pub const MAX_PASSWORD_LENGTH: usize = 128;

/// A clear password on its way to being hashed or verified. `Debug` shows `***`; it cannot be
/// serialised; its memory is zeroed when dropped.
pub struct Password(SecretString);

impl Password {
    /// Checks the length rules.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let length = input.chars().count();
        if length < MIN_PASSWORD_LENGTH {
            return Err(ValidationError::new(
                "password",
                format!("must be at least {MIN_PASSWORD_LENGTH} characters"),
            ));
        }
        if length > MAX_PASSWORD_LENGTH {
            return Err(ValidationError::new(
                "password",
                format!("must be at most {MAX_PASSWORD_LENGTH} characters"),
            ));
        }
        Ok(Self(SecretString::from(input.to_owned())))
    }

    /// Hashes the password with argon2id, the current parameters ([`ARGON2_MEMORY_KIB`]) and a
    /// new random salt.
    ///
    /// With the `insecure-test-hash` feature (tests only; a release build refuses it) the
    /// parameters are the cheapest argon2id allows (m = 8 KiB, t = 1, p = 1): still an argon2id
    /// PHC string that [`PasswordHash::verify`] checks, and one that
    /// [`PasswordHash::needs_rehash`] flags, so a deployment replaces it at the next sign-in.
    pub fn hash(&self) -> Result<PasswordHash, ValidationError> {
        let salt = SaltString::generate(&mut OsRng);
        for_new_hashes()
            .hash_password(self.0.expose_secret().as_bytes(), &salt)
            .map(|hash| PasswordHash(hash.to_string()))
            .map_err(|error| ValidationError::new("password", format!("cannot be hashed: {error}")))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An argon2id hash in PHC string format (`$argon2id$v=19$...`). Stored, never serialised, and
/// shown as `PasswordHash(***)`.
///
/// Deliberately neither `Serialize` nor `Deserialize`: a hash in a JSON answer or a log can be
/// cracked offline, so the only way out is [`PasswordHash::as_phc`], for storage. `User` skips
/// the field when it serialises (a test checks the JSON).
///
/// ```compile_fail
/// fn serialisable<T: serde::Serialize>() {}
/// serialisable::<domain::PasswordHash>();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Parses a hash from outside the database (an import, a file), checking that it is an
    /// argon2id PHC string.
    pub fn parse(phc: &str) -> Result<Self, ValidationError> {
        let parsed = PhcHash::new(phc).map_err(|_| ValidationError::new("hashed_password", "is not a PHC string"))?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(ValidationError::new("hashed_password", "is not an argon2id hash"));
        }
        Ok(Self(phc.to_owned()))
    }

    /// Wraps a hash read back from the `users` table, without parsing the PHC string: it is
    /// parsed when [`PasswordHash::verify`] needs it, which most reads never do.
    ///
    /// For stored rows only, never for input: every hash this project writes comes from
    /// [`Password::hash`], and the database's own check holds every other writer to a string
    /// that starts with `$argon2id$` (`chk_users_hashed_password_format`), not to a well-formed
    /// PHC string. A stored hash that does not parse never verifies: `verify` returns false.
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// Whether `password` is the one this hash was made from (in constant time). A hash that is
    /// not an argon2id PHC string verifies no password, after as much work as one that is (a
    /// verification against [`PasswordHash::dummy`]), so that the time taken does not single
    /// out such accounts.
    #[must_use]
    pub fn verify(&self, password: &Password) -> bool {
        match PhcHash::new(&self.0) {
            Ok(hash) if hash.algorithm.as_str() == "argon2id" => Argon2::default()
                .verify_password(password.0.expose_secret().as_bytes(), &hash)
                .is_ok(),
            _ => {
                let _ = Self::dummy().verify(password);
                false
            }
        }
    }

    /// A hash of a random password that nobody knows, made once per process with the parameters
    /// of [`Password::hash`]: a sign-in for an unknown address verifies against it, so that it costs the
    /// same time as one for a known address and the answer's timing does not tell which
    /// addresses have accounts.
    #[must_use]
    pub fn dummy() -> &'static Self {
        static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
        DUMMY.get_or_init(|| {
            let mut secret = [0_u8; 32];
            argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut secret);
            let salt = SaltString::generate(&mut OsRng);
            for_new_hashes()
                .hash_password(&secret, &salt)
                .map_or_else(|_| Self(String::new()), |hash| Self(hash.to_string()))
        })
    }

    /// True when this hash is weaker than what [`Password::hash`] makes now: not argon2id, an
    /// older argon2 version, less memory or fewer passes than the current parameters, or a
    /// shorter output. A hash that does not parse needs one too (it verifies nothing anyway).
    #[must_use]
    pub fn needs_rehash(&self) -> bool {
        let Ok(hash) = PhcHash::new(&self.0) else { return true };
        let Ok(params) = argon2::Params::try_from(&hash) else {
            return true;
        };
        hash.algorithm.as_str() != "argon2id"
            || hash
                .version
                .is_none_or(|version| version < u32::from(argon2::Version::V0x13))
            || params.m_cost() < ARGON2_MEMORY_KIB
            || params.t_cost() < ARGON2_ITERATIONS
            || params.output_len().unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN) < argon2::Params::DEFAULT_OUTPUT_LEN
    }

    /// The PHC string, for storage only.
    #[must_use]
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

/// argon2id with the current parameters.
fn current() -> Argon2<'static> {
    let params =
        argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// argon2id as [`Password::hash`] and [`PasswordHash::dummy`] use it: the current parameters, or
/// with the `insecure-test-hash` feature the cheapest argon2id allows.
fn for_new_hashes() -> Argon2<'static> {
    if !cfg!(feature = "insecure-test-hash") {
        return current();
    }
    let params = argon2::Params::new(
        argon2::Params::MIN_M_COST,
        argon2::Params::MIN_T_COST,
        argon2::Params::MIN_P_COST,
        None,
    )
    .unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_argon2id_and_verifies() {
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = password.hash().expect("hash");
        assert!(hash.as_phc().starts_with("$argon2id$v=19$"), "{}", hash.as_phc());
        assert!(hash.verify(&password));
        assert!(!hash.verify(&Password::parse("wrong horse battery").expect("valid")));
        assert_ne!(password.hash().expect("hash"), hash, "a new salt every time");
        assert_eq!(PasswordHash::parse(hash.as_phc()).expect("a PHC string"), hash);
        let stored = PasswordHash::from_stored(hash.as_phc().to_owned());
        assert_eq!(stored, hash);
        assert!(stored.verify(&password), "a stored hash verifies once parsed");
    }

    #[test]
    fn a_stored_hash_that_does_not_parse_verifies_nothing() {
        let password = Password::parse("correct horse battery").expect("valid");
        // What chk_users_hashed_password_format lets through without being a PHC string.
        assert!(!PasswordHash::from_stored("$argon2id$garbage".to_owned()).verify(&password));
        assert!(!PasswordHash::from_stored(String::new()).verify(&password));
        // A real hash of the same password made with another algorithm is refused too.
        let argon2i = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::default(),
        )
        .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
        .expect("hash")
        .to_string();
        assert!(argon2i.starts_with("$argon2i$"), "{argon2i}");
        assert!(!PasswordHash::from_stored(argon2i).verify(&password));
    }

    #[test]
    fn the_current_parameters_are_owasps_and_the_crates_default() {
        let default = argon2::Params::DEFAULT;
        assert_eq!(
            (default.m_cost(), default.t_cost(), default.p_cost()),
            (ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM)
        );
        let hash = PasswordHash(
            current()
                .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
                .expect("hash")
                .to_string(),
        );
        assert!(
            hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_phc()
        );
        assert!(!hash.needs_rehash());
    }

    /// The prefix of every hash [`Password::hash`] makes in this build.
    const NEW_HASH_PREFIX: &str = if cfg!(feature = "insecure-test-hash") {
        "$argon2id$v=19$m=8,t=1,p=1$"
    } else {
        "$argon2id$v=19$m=19456,t=2,p=1$"
    };

    /// Without the feature (`cargo test -p domain`): the current parameters, which need no
    /// rehash. With it (`--features insecure-test-hash`, or any test build that unifies it in):
    /// the cheapest, a hash that verifies and that `needs_rehash` flags.
    #[test]
    fn new_hashes_and_the_dummy_use_the_parameters_of_this_build() {
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = password.hash().expect("hash");
        assert!(hash.as_phc().starts_with(NEW_HASH_PREFIX), "{}", hash.as_phc());
        assert!(hash.verify(&password));
        assert_eq!(hash.needs_rehash(), cfg!(feature = "insecure-test-hash"));
        // The dummy costs what a new hash costs: the same parameters.
        assert!(PasswordHash::dummy().as_phc().starts_with(NEW_HASH_PREFIX));
        assert!(!PasswordHash::dummy().verify(&password));
    }

    #[test]
    fn weaker_hashes_need_a_rehash() {
        let weak = |m: u32, t: u32, p: u32| {
            let params = argon2::Params::new(m, t, p, None).expect("params");
            let hash = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
                .expect("hash")
                .to_string();
            PasswordHash::from_stored(hash)
        };
        assert!(weak(8_192, 2, 1).needs_rehash(), "less memory");
        assert!(weak(19_456, 1, 1).needs_rehash(), "fewer passes");
        assert!(!weak(19_456, 2, 1).needs_rehash(), "the current parameters");
        assert!(!weak(47_104, 2, 1).needs_rehash(), "stronger stays");
        assert!(PasswordHash::from_stored("$argon2id$garbage".to_owned()).needs_rehash());
        // The weaker hash still verifies, so a sign-in can replace it.
        assert!(weak(8_192, 1, 1).verify(&Password::parse("correct horse battery").expect("valid")));
    }

    #[test]
    fn secrets_stay_hidden() {
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = password.hash().expect("hash");
        assert_eq!(format!("{password:?} {hash:?}"), "Password(***) PasswordHash(***)");
    }

    #[test]
    fn rules() {
        assert_eq!(
            Password::parse("short").expect_err("short").to_string(),
            "password: must be at least 8 characters"
        );
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(PasswordHash::parse("hunter2").is_err());
        assert!(PasswordHash::parse("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }
}
