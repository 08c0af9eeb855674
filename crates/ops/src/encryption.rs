//! Backups encrypted at rest with age (X25519 recipients): the public keys encrypt, the private
//! key that decrypts is read from a file when a backup is verified or restored, and never logged.

use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr as _;

use age::x25519;

use crate::BackupError;

/// The public keys a backup is encrypted to (`age1…`).
#[derive(Clone)]
pub struct Recipients(Vec<x25519::Recipient>);

impl Recipients {
    /// Parses comma- or newline-separated `age1…` keys; `#` starts a comment line. `source`
    /// names the setting in errors.
    pub fn parse(source: &str, text: &str) -> Result<Self, BackupError> {
        let keys: Vec<x25519::Recipient> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(|key| {
                x25519::Recipient::from_str(key).map_err(|reason| {
                    BackupError::Settings(format!("{source}: {key:?} is not an age public key: {reason}"))
                })
            })
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(BackupError::Settings(format!("{source} holds no age public key")));
        }
        Ok(Self(keys))
    }

    /// The keys as text, for the manifest.
    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Wraps `output`: what is written to the result is encrypted to every recipient. Call
    /// `finish` on it to write the last chunk.
    pub fn encrypt<W: Write>(&self, output: W) -> Result<age::stream::StreamWriter<W>, BackupError> {
        let encryptor = age::Encryptor::with_recipients(self.0.iter().map(|key| key as &dyn age::Recipient))
            .map_err(|error| BackupError::Encryption(error.to_string()))?;
        encryptor
            .wrap_output(output)
            .map_err(|error| BackupError::Encryption(error.to_string()))
    }
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

/// The private keys read from an identity file (`age-keygen` writes one).
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl Identities {
    /// Reads an age identity file. The error names the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, BackupError> {
        let unreadable = |reason: String| {
            BackupError::Settings(format!(
                "cannot read the age identity file {}: {reason}",
                path.display()
            ))
        };
        let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
            .map_err(|error| unreadable(error.to_string()))?;
        let identities = file.into_identities().map_err(|error| unreadable(error.to_string()))?;
        if identities.is_empty() {
            return Err(unreadable("it holds no identity".to_owned()));
        }
        Ok(Self(identities))
    }

    /// A reader of the plaintext of the age file `input`.
    pub fn decrypt<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>, BackupError> {
        let decryptor = age::Decryptor::new(input).map_err(|error| BackupError::Decryption(error.to_string()))?;
        decryptor
            .decrypt(self.0.iter().map(|identity| identity.as_ref() as &dyn age::Identity))
            .map_err(|error| BackupError::Decryption(error.to_string()))
    }
}

/// A writer that counts and hashes what passes through it: the size and SHA-256 of a backup
/// file as it is written, with no second read.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        use sha2::Digest as _;
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the bytes written and their SHA-256 (lower-case hex).
    pub fn finish(self) -> (W, u64, String) {
        use sha2::Digest as _;
        (self.inner, self.written, format!("{:x}", self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 of a file (lower-case hex) and its size, read in one pass.
pub fn file_digest(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut writer = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut writer)?;
    let (_, size, digest) = writer.finish();
    Ok((size, digest))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn what_is_encrypted_decrypts_with_the_identity_only() {
        let identity = x25519::Identity::generate();
        let directory = tempfile::tempdir().expect("a temporary directory");
        let identity_file = directory.path().join("key.txt");
        std::fs::write(&identity_file, identity.to_string().expose_secret()).expect("write the key");
        let recipients = Recipients::parse("test", &identity.to_public().to_string()).expect("a key");

        let mut ciphertext = Vec::new();
        let mut writer = recipients.encrypt(&mut ciphertext).expect("an encryptor");
        writer.write_all(b"a backup").expect("encrypt");
        writer.finish().expect("finish");
        assert!(
            !ciphertext.windows(8).any(|window| window == b"a backup"),
            "the plaintext is not in the file"
        );

        let mut plaintext = Vec::new();
        Identities::from_file(&identity_file)
            .expect("the identity file")
            .decrypt(ciphertext.as_slice())
            .expect("decrypts")
            .read_to_end(&mut plaintext)
            .expect("read");
        assert_eq!(plaintext, b"a backup");

        let other_file = directory.path().join("other.txt");
        std::fs::write(&other_file, x25519::Identity::generate().to_string().expose_secret()).expect("write");
        let error = Identities::from_file(&other_file)
            .expect("the other identity file")
            .decrypt(ciphertext.as_slice())
            .err()
            .expect("another key cannot decrypt");
        assert!(matches!(error, BackupError::Decryption(_)), "{error}");
    }

    #[test]
    fn bad_identity_files_are_named_without_their_content() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let file = directory.path().join("key.txt");
        std::fs::write(&file, "AGE-SECRET-KEY-NOT-A-REAL-ONE").expect("write");
        let error = Identities::from_file(&file).err().expect("refused").to_string();
        assert!(error.contains("key.txt"), "{error}");
        assert!(!error.contains("NOT-A-REAL-ONE"), "{error}");
    }
}
