//! Off-site copies of backups in an S3-compatible object store.
//!
//! [`upload`] copies backup files to `prefix/<file name>` in a bucket and then proves each copy:
//! a HEAD must report the local size and a streamed GET must hash to the local file's SHA-256.
//! [`list`] and [`delete`] serve the CLI's listing and pruning of off-site copies.
//!
//! The store is reached through [`object_store`], which is async; every function here is blocking
//! and builds its own current-thread tokio runtime for the call, so none of them may be called from
//! inside an async runtime. Settings come from `BACKUP_S3_*` environment variables, see
//! [`OffsiteConfig::from_env`].

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::{Host, Url};

const ENDPOINT: &str = "BACKUP_S3_ENDPOINT";
const BUCKET: &str = "BACKUP_S3_BUCKET";
const PREFIX: &str = "BACKUP_S3_PREFIX";
const REGION: &str = "BACKUP_S3_REGION";
const ACCESS_KEY_ID: &str = "BACKUP_S3_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "BACKUP_S3_SECRET_ACCESS_KEY";
const SECRET_ACCESS_KEY_FILE: &str = "BACKUP_S3_SECRET_ACCESS_KEY_FILE";
const ALLOW_HTTP: &str = "BACKUP_S3_ALLOW_HTTP";

/// The region used when `BACKUP_S3_REGION` is unset; S3-compatible stores mostly ignore it.
const DEFAULT_REGION: &str = "us-east-1";

/// Files at least this large go up as a multipart upload, streamed part by part; smaller files
/// are read whole and sent in one PUT.
const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// The size of each multipart part (S3 requires at least 5 MiB for all but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once; bounds memory to about `PART_SIZE * PARTS_IN_FLIGHT`.
const PARTS_IN_FLIGHT: usize = 4;
/// How much of a file is read at a time while streaming it into a multipart upload.
const READ_BUFFER: usize = 1024 * 1024;

/// Where off-site copies go: an S3-compatible bucket and the credentials for it.
///
/// `Debug` shows the secret access key as redacted.
#[derive(Clone, Debug)]
pub struct OffsiteConfig {
    /// The store's base URL, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    /// Requests use path-style addressing (`endpoint/bucket/key`).
    pub endpoint: Url,
    /// The bucket that holds the copies; it must already exist.
    pub bucket: String,
    /// The key prefix the copies go under, without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// Whether plain `http://` is allowed (otherwise only `https://` is used).
    pub allow_http: bool,
}

impl OffsiteConfig {
    /// The environment variables [`OffsiteConfig::from_env`] reads, for `--help`.
    pub const VARIABLES: &'static [&'static str] = &[
        ENDPOINT,
        BUCKET,
        PREFIX,
        REGION,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        SECRET_ACCESS_KEY_FILE,
        ALLOW_HTTP,
    ];

    /// Reads the settings through `lookup` (a variable's value, or `None` when it is unset; an
    /// empty value counts as unset):
    ///
    /// - `BACKUP_S3_BUCKET`: when unset, off-site copies are off and this returns `Ok(None)`;
    /// - `BACKUP_S3_ENDPOINT`: the store's URL (`https://…`, or `http://…`, see below);
    /// - `BACKUP_S3_PREFIX`: the key prefix, default none;
    /// - `BACKUP_S3_REGION`: default `us-east-1`;
    /// - `BACKUP_S3_ACCESS_KEY_ID`;
    /// - `BACKUP_S3_SECRET_ACCESS_KEY`, or `BACKUP_S3_SECRET_ACCESS_KEY_FILE`: a file whose
    ///   content, trimmed, is the secret (only one of the two may be set);
    /// - `BACKUP_S3_ALLOW_HTTP`: `true` allows a plain `http://` endpoint on any host. Without
    ///   it, `http://` is allowed only on a loopback host (`localhost`, `127.0.0.0/8`, `::1`) and
    ///   refused elsewhere.
    ///
    /// Once the bucket is set, a missing endpoint, access key id or secret is an error naming
    /// the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, OffsiteError> {
        let raw = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let get = |name: &str| raw(name).map(|value| value.trim().to_owned());
        let require = |name: &'static str| get(name).ok_or(OffsiteError::MissingVariable { variable: name });

        let Some(bucket) = get(BUCKET) else {
            return Ok(None);
        };
        let endpoint = require(ENDPOINT)?;
        let endpoint = Url::parse(&endpoint).map_err(|error| OffsiteError::InvalidVariable {
            variable: ENDPOINT,
            reason: format!("not a URL: {error}"),
        })?;
        let access_key_id = require(ACCESS_KEY_ID)?;
        let secret_access_key = match (raw(SECRET_ACCESS_KEY), get(SECRET_ACCESS_KEY_FILE)) {
            (Some(secret), None) => SecretString::from(secret),
            (None, Some(path)) => read_secret_file(Path::new(&path))?,
            (Some(_), Some(_)) => {
                return Err(OffsiteError::ConflictingVariables {
                    first: SECRET_ACCESS_KEY,
                    second: SECRET_ACCESS_KEY_FILE,
                });
            }
            (None, None) => return Err(OffsiteError::MissingSecret),
        };
        let allow_http_flag = match get(ALLOW_HTTP) {
            None => false,
            Some(value) => parse_bool(&value).ok_or_else(|| OffsiteError::InvalidVariable {
                variable: ALLOW_HTTP,
                reason: format!("expected true or false, found {value:?}"),
            })?,
        };
        let allow_http = match endpoint.scheme() {
            "https" => allow_http_flag,
            "http" if allow_http_flag || is_loopback(&endpoint) => true,
            "http" => {
                return Err(OffsiteError::InvalidVariable {
                    variable: ENDPOINT,
                    reason: format!("plain http to a host that is not loopback; use https or set {ALLOW_HTTP}=true"),
                });
            }
            other => {
                return Err(OffsiteError::InvalidVariable {
                    variable: ENDPOINT,
                    reason: format!("unsupported scheme {other:?}, expected https or http"),
                });
            }
        };
        let prefix = get(PREFIX).map_or_else(String::new, |prefix| {
            prefix
                .split('/')
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("/")
        });

        Ok(Some(Self {
            endpoint,
            bucket,
            prefix,
            region: get(REGION).unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            access_key_id,
            secret_access_key,
            allow_http,
        }))
    }

    /// [`OffsiteConfig::from_lookup`] on the process environment.
    pub fn from_env() -> Result<Option<Self>, OffsiteError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `s3://bucket/prefix`, for messages.
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The prefix as an object path; `None` for the bucket's root.
    fn prefix_path(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }

    /// The key a file named `name` is copied to.
    fn key_for(&self, name: &str) -> ObjectPath {
        self.prefix_path().unwrap_or_default().join(name)
    }

    /// Wraps an object store error, with the secret access key removed from its text.
    fn store_error(
        &self,
        operation: &'static str,
        target: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> OffsiteError + '_ {
        let target = target.into();
        move |error| OffsiteError::Store {
            operation,
            target,
            detail: redact(&error.to_string(), self.secret_access_key.expose_secret()),
        }
    }
}

/// One file copied off-site and proven.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uploaded {
    /// The object's key in the bucket, prefix included.
    pub key: String,
    /// The size in bytes, the same locally and off-site.
    pub size: u64,
    /// The SHA-256 of the content in lower-case hex, the same locally and off-site.
    pub sha256: String,
}

/// Why an off-site operation failed. No message contains the secret access key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffsiteError {
    /// A variable needed once `BACKUP_S3_BUCKET` is set is unset.
    #[error("environment variable {variable} is not set (required when BACKUP_S3_BUCKET is set)")]
    MissingVariable {
        /// The variable's name.
        variable: &'static str,
    },
    /// Neither way of giving the secret access key is set.
    #[error(
        "neither BACKUP_S3_SECRET_ACCESS_KEY nor BACKUP_S3_SECRET_ACCESS_KEY_FILE is set (one is required when BACKUP_S3_BUCKET is set)"
    )]
    MissingSecret,
    /// A variable has a value that cannot be used.
    #[error("environment variable {variable} is invalid: {reason}")]
    InvalidVariable {
        /// The variable's name.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two variables that exclude each other are both set.
    #[error("only one of {first} and {second} may be set")]
    ConflictingVariables {
        /// One variable's name.
        first: &'static str,
        /// The other's.
        second: &'static str,
    },
    /// The file named by `BACKUP_S3_SECRET_ACCESS_KEY_FILE` could not be read, or is empty.
    #[error("cannot read the secret access key from {}: {source}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A local file's name cannot serve as the last part of an object key.
    #[error("{} has no file name that can serve as an object key", path.display())]
    FileName {
        /// The file.
        path: PathBuf,
    },
    /// Two files to upload have the same name, so their keys would collide.
    #[error("two files to upload are named {name}; their off-site copies would overwrite each other")]
    DuplicateName {
        /// The shared file name.
        name: String,
    },
    /// A key given to [`delete`] is malformed or outside the configured prefix.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokio runtime for the call could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The object store refused or failed a request.
    #[error("object store {operation} of {target} failed: {detail}")]
    Store {
        /// What was attempted: `connect to`, `put`, `head`, `get`, `list` or `delete`.
        operation: &'static str,
        /// The key, or `s3://bucket/prefix`.
        target: String,
        /// The store's error, with the secret access key redacted.
        detail: String,
    },
    /// An off-site copy differs from the local file.
    #[error("off-site copy {key} does not match the local file: {property} expected {expected}, found {actual}")]
    Mismatch {
        /// The object's key.
        key: String,
        /// What differs: `size` or `sha256`.
        property: &'static str,
        /// The local file's value.
        expected: String,
        /// The off-site copy's value.
        actual: String,
    },
}

/// Uploads each file under `prefix/<file name>`, then proves the copy: a HEAD must report the
/// local size and a streamed GET must hash to the local file's SHA-256. Files of
/// 8 MiB or more are streamed as multipart uploads, so a large file is never held in memory.
///
/// Files are handled in order; the first failure stops the run (copies already made stay).
pub fn upload(config: &OffsiteConfig, files: &[&Path]) -> Result<Vec<Uploaded>, OffsiteError> {
    let mut names = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| OffsiteError::FileName {
                path: path.to_path_buf(),
            })?;
        if names.contains(&name) {
            return Err(OffsiteError::DuplicateName { name: name.to_owned() });
        }
        names.push(name);
    }
    let store = build_store(config)?;
    block_on(async {
        let mut uploaded = Vec::with_capacity(files.len());
        for (path, name) in files.iter().zip(names) {
            let key = config.key_for(name);
            let (size, sha256) = put_file(&store, config, &key, path).await?;
            verify(&store, config, &key, size, &sha256).await?;
            tracing::info!(key = %key, size, sha256 = %sha256, "off-site copy uploaded and verified");
            uploaded.push(Uploaded {
                key: key.to_string(),
                size,
                sha256,
            });
        }
        Ok(uploaded)
    })?
}

/// Lists the keys under the prefix with their sizes, sorted by key.
pub fn list(config: &OffsiteConfig) -> Result<Vec<(String, u64)>, OffsiteError> {
    let store = build_store(config)?;
    block_on(async {
        let prefix = config.prefix_path();
        let mut objects = store.list(prefix.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(config.store_error("list", config.location()))?;
            found.push((meta.location.to_string(), meta.size));
        }
        found.sort();
        Ok(found)
    })?
}

/// Deletes the given keys (as [`list`] returns them). A key outside the prefix is refused before
/// anything is deleted; a key that is already gone is not an error.
pub fn delete(config: &OffsiteConfig, keys: &[String]) -> Result<(), OffsiteError> {
    let prefix = config.prefix_path();
    let paths = keys
        .iter()
        .map(|key| {
            let invalid = |reason: String| OffsiteError::InvalidKey {
                key: key.clone(),
                reason,
            };
            let path = ObjectPath::parse(key).map_err(|error| invalid(error.to_string()))?;
            match &prefix {
                Some(prefix) if !path.prefix_matches(prefix) || path == *prefix => {
                    Err(invalid(format!("not under the prefix {prefix}")))
                }
                _ if path.as_ref().is_empty() => Err(invalid("empty".to_owned())),
                _ => Ok(path),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store = build_store(config)?;
    block_on(async {
        for path in &paths {
            match store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(key = %path, "off-site copy deleted");
                }
                Err(error) => return Err(config.store_error("delete", path.to_string())(error)),
            }
        }
        Ok(())
    })?
}

/// The S3 client for `config`; it makes no request yet.
fn build_store(config: &OffsiteConfig) -> Result<AmazonS3, OffsiteError> {
    AmazonS3Builder::new()
        .with_endpoint(config.endpoint.as_str())
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(config.secret_access_key.expose_secret())
        .with_allow_http(config.allow_http)
        .build()
        .map_err(config.store_error("connect to", config.location()))
}

/// Runs `future` to completion on a current-thread runtime made for this call.
fn block_on<F: Future>(future: F) -> Result<F::Output, OffsiteError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(OffsiteError::Runtime)?;
    Ok(runtime.block_on(future))
}

/// Copies the file at `path` to `key`, returning the size and SHA-256 of what was read and sent.
async fn put_file(
    store: &AmazonS3,
    config: &OffsiteConfig,
    key: &ObjectPath,
    path: &Path,
) -> Result<(u64, String), OffsiteError> {
    let read_error = |source| OffsiteError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let length = file.metadata().map_err(read_error)?.len();
    let mut hasher = Sha256::new();

    if length < MULTIPART_THRESHOLD {
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(read_error)?;
        hasher.update(&content);
        let size = content.len() as u64;
        store
            .put(key, PutPayload::from(content))
            .await
            .map_err(config.store_error("put", key.to_string()))?;
        return Ok((size, hex(hasher)));
    }

    let upload = store
        .put_multipart(key)
        .await
        .map_err(config.store_error("put", key.to_string()))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut buffer = vec![0; READ_BUFFER];
    let mut size = 0_u64;
    loop {
        // A blocking read on the runtime's only thread: it pauses the parts in flight for as long
        // as one read of `READ_BUFFER` bytes takes, which is fine for a local file.
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                abort(writer, key).await;
                return Err(read_error(error));
            }
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
        if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            abort(writer, key).await;
            return Err(config.store_error("put", key.to_string())(error));
        }
        writer.write(&buffer[..read]);
    }
    writer
        .finish()
        .await
        .map_err(config.store_error("put", key.to_string()))?;
    Ok((size, hex(hasher)))
}

/// Abandons a multipart upload so the store drops its parts; failing to is only logged.
async fn abort(writer: WriteMultipart, key: &ObjectPath) {
    if let Err(error) = writer.abort().await {
        tracing::warn!(key = %key, %error, "could not abort the multipart upload");
    }
}

/// Proves the object at `key` is the file that was uploaded: HEAD must report `size` and a
/// streamed GET must yield `size` bytes whose SHA-256 is `sha256`.
async fn verify(
    store: &AmazonS3,
    config: &OffsiteConfig,
    key: &ObjectPath,
    size: u64,
    sha256: &str,
) -> Result<(), OffsiteError> {
    let mismatch = |property, expected: String, actual: String| OffsiteError::Mismatch {
        key: key.to_string(),
        property,
        expected,
        actual,
    };
    let meta = store
        .head(key)
        .await
        .map_err(config.store_error("head", key.to_string()))?;
    if meta.size != size {
        return Err(mismatch("size", size.to_string(), meta.size.to_string()));
    }

    let mut content = store
        .get(key)
        .await
        .map_err(config.store_error("get", key.to_string()))?
        .into_stream();
    let mut hasher = Sha256::new();
    let mut received = 0_u64;
    while let Some(chunk) = content.next().await {
        let chunk = chunk.map_err(config.store_error("get", key.to_string()))?;
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    if received != size {
        return Err(mismatch("size", size.to_string(), received.to_string()));
    }
    let actual = hex(hasher);
    if actual != sha256 {
        return Err(mismatch("sha256", sha256.to_owned(), actual));
    }
    Ok(())
}

/// The digest in lower-case hex.
fn hex(hasher: Sha256) -> String {
    format!("{:x}", hasher.finalize())
}

/// Reads a secret from a file, trimmed; an empty file is an error.
fn read_secret_file(path: &Path) -> Result<SecretString, OffsiteError> {
    let error = |source| OffsiteError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    let mut content = std::fs::read_to_string(path).map_err(error)?;
    let secret = SecretString::from(content.trim());
    content.zeroize();
    if secret.expose_secret().is_empty() {
        return Err(error(io::Error::new(io::ErrorKind::InvalidData, "the file is empty")));
    }
    Ok(secret)
}

/// `true`/`1`/`yes` or `false`/`0`/`no`, in any case.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `text` with every occurrence of `secret` replaced.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    use test_fixtures::s3::S3Server as Moto;

    fn moto_config(moto: &Moto) -> OffsiteConfig {
        config_with_secret(moto, &moto.secret_access_key)
    }

    fn config_with_secret(moto: &Moto, secret: &str) -> OffsiteConfig {
        let vars = HashMap::from([
            (ENDPOINT, moto.endpoint()),
            (BUCKET, moto.bucket.clone()),
            (PREFIX, "/nightly/db/".to_owned()),
            (ACCESS_KEY_ID, moto.access_key_id.clone()),
            (SECRET_ACCESS_KEY, secret.to_owned()),
        ]);
        let config = OffsiteConfig::from_lookup(|name| vars.get(name).cloned())
            .expect("a valid configuration")
            .expect("the bucket is set");
        assert!(config.allow_http, "http on loopback is allowed");
        config
    }

    /// `len` bytes that do not repeat with any short period (xorshift).
    fn noise(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        hex(hasher)
    }

    /// A small and a ~20 MiB (multipart) backup file in a temporary directory.
    fn backup_files() -> (tempfile::TempDir, Vec<(PathBuf, Vec<u8>)>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let files = [
            ("small.dump", noise(1234, 1)),
            ("large.dump", noise(20 * 1024 * 1024 + 4321, 2)),
        ]
        .into_iter()
        .map(|(name, content)| {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).expect("the backup file is written");
            (path, content)
        })
        .collect();
        (dir, files)
    }

    #[test]
    fn upload_reports_local_size_and_sha256_and_list_shows_the_copies() {
        let moto = Moto::start("upload", false);
        let config = moto_config(&moto);
        let (_dir, files) = backup_files();
        let paths: Vec<&Path> = files.iter().map(|(path, _)| path.as_path()).collect();

        let uploaded = upload(&config, &paths).expect("the upload succeeds");

        let expected: Vec<Uploaded> = files
            .iter()
            .map(|(path, content)| Uploaded {
                key: format!(
                    "nightly/db/{}",
                    path.file_name().and_then(|n| n.to_str()).expect("utf-8")
                ),
                size: content.len() as u64,
                sha256: sha256_hex(content),
            })
            .collect();
        assert_eq!(uploaded, expected);

        // An object outside the prefix is not listed.
        let store = build_store(&config).expect("a store");
        block_on(store.put(&ObjectPath::from("elsewhere/x"), PutPayload::from_static(b"x")))
            .expect("a runtime")
            .expect("the put succeeds");
        let listed = list(&config).expect("the listing succeeds");
        let mut want: Vec<(String, u64)> = expected.iter().map(|u| (u.key.clone(), u.size)).collect();
        want.sort();
        assert_eq!(listed, want);

        // The large file went up in parts: an S3 multipart ETag ends in "-<part count>".
        let meta = block_on(store.head(&ObjectPath::from("nightly/db/large.dump")))
            .expect("a runtime")
            .expect("the head succeeds");
        let e_tag = meta.e_tag.expect("an ETag");
        assert!(e_tag.trim_matches('"').ends_with("-3"), "not a 3-part upload: {e_tag}");
    }

    #[test]
    fn a_copy_changed_after_upload_is_a_mismatch() {
        let moto = Moto::start("mismatch", false);
        let config = moto_config(&moto);
        let (_dir, files) = backup_files();
        let (path, content) = &files[0];
        let uploaded = upload(&config, &[path.as_path()]).expect("the upload succeeds");
        let Uploaded { key, size, sha256 } = uploaded.into_iter().next().expect("one file");
        let store = build_store(&config).expect("a store");
        let object = ObjectPath::parse(&key).expect("a valid key");
        let check = || block_on(verify(&store, &config, &object, size, &sha256)).expect("a runtime");
        check().expect("the untouched copy verifies");

        // Same size, different bytes: only the hash can tell.
        let mut tampered = content.clone();
        tampered[0] ^= 0xff;
        block_on(store.put(&object, PutPayload::from(tampered.clone())))
            .expect("a runtime")
            .expect("the overwrite succeeds");
        match check() {
            Err(OffsiteError::Mismatch {
                key: got_key,
                property,
                expected,
                actual,
            }) => {
                assert_eq!(got_key, key);
                assert_eq!(property, "sha256");
                assert_eq!(expected, sha256);
                assert_eq!(actual, sha256_hex(&tampered));
            }
            other => panic!("expected a sha256 mismatch, got {other:?}"),
        }

        // Truncated: the size differs.
        block_on(store.put(&object, PutPayload::from(content[..100].to_vec())))
            .expect("a runtime")
            .expect("the overwrite succeeds");
        let error = check().expect_err("a truncated copy fails");
        assert!(
            matches!(&error, OffsiteError::Mismatch { property: "size", expected, actual, .. }
                if *expected == content.len().to_string() && actual == "100"),
            "{error:?}"
        );
        assert!(error.to_string().contains(&key), "{error}");
    }

    #[test]
    fn delete_removes_the_copies() {
        let moto = Moto::start("delete", false);
        let config = moto_config(&moto);
        let (_dir, files) = backup_files();
        let paths: Vec<&Path> = files.iter().map(|(path, _)| path.as_path()).collect();
        upload(&config, &paths).expect("the upload succeeds");
        let keys: Vec<String> = list(&config)
            .expect("a listing")
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys.len(), 2);

        let outside = vec!["elsewhere/x".to_owned()];
        assert!(matches!(
            delete(&config, &outside),
            Err(OffsiteError::InvalidKey { .. })
        ));

        delete(&config, &keys).expect("the delete succeeds");
        assert_eq!(list(&config).expect("a listing"), vec![]);
        delete(&config, &keys).expect("deleting what is gone succeeds");
    }

    #[test]
    fn a_wrong_secret_fails_without_showing_the_secret() {
        let moto = Moto::start("secret", true);
        let wrong = "WrongSecretKey0123456789abcdefghijklmnop";
        let config = config_with_secret(&moto, wrong);
        assert!(
            !format!("{config:?}").contains(wrong),
            "Debug shows the secret: {config:?}"
        );
        let (_dir, files) = backup_files();

        let error = upload(&config, &[files[0].0.as_path()]).expect_err("a wrong secret is refused");

        assert!(
            matches!(&error, OffsiteError::Store { operation: "put", detail, .. } if detail.contains("SignatureDoesNotMatch")),
            "{error:?}"
        );
        assert!(
            !error.to_string().contains(wrong),
            "the message shows the secret: {error}"
        );
        assert!(
            !format!("{error:?}").contains(wrong),
            "Debug shows the secret: {error:?}"
        );
        // The same request with the right secret passes moto's signature check.
        let right = moto_config(&moto);
        assert!(!format!("{right:?}").contains(&moto.secret_access_key));
        let uploaded = upload(&right, &[files[0].0.as_path()]).expect("the right secret works");
        assert_eq!(uploaded[0].key, "nightly/db/small.dump");
    }

    fn lookup_in(vars: &[(&str, &str)]) -> Result<Option<OffsiteConfig>, OffsiteError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        OffsiteConfig::from_lookup(|name| vars.get(name).cloned())
    }

    const COMPLETE: &[(&str, &str)] = &[
        (ENDPOINT, "https://s3.example.com"),
        (BUCKET, "backups"),
        (ACCESS_KEY_ID, "AKIAEXAMPLE"),
        (SECRET_ACCESS_KEY, "example-secret"),
    ];

    #[test]
    fn from_lookup_without_a_bucket_is_none() {
        assert!(lookup_in(&[]).expect("no error").is_none());
        let without_bucket: Vec<_> = COMPLETE.iter().copied().filter(|(name, _)| *name != BUCKET).collect();
        assert!(lookup_in(&without_bucket).expect("no error").is_none());
        assert!(lookup_in(&[(BUCKET, "  ")]).expect("no error").is_none());
    }

    #[test]
    fn from_lookup_names_the_missing_variable() {
        for missing in [ENDPOINT, ACCESS_KEY_ID] {
            let vars: Vec<_> = COMPLETE.iter().copied().filter(|(name, _)| *name != missing).collect();
            let error = lookup_in(&vars).expect_err("incomplete settings fail");
            assert!(
                matches!(error, OffsiteError::MissingVariable { variable } if variable == missing),
                "{error:?}"
            );
            assert!(error.to_string().contains(missing), "{error}");
        }
        let error = lookup_in(&[(BUCKET, "backups")]).expect_err("a bucket alone fails");
        assert!(error.to_string().contains(ENDPOINT), "{error}");

        let vars: Vec<_> = COMPLETE
            .iter()
            .copied()
            .filter(|(name, _)| *name != SECRET_ACCESS_KEY)
            .collect();
        let error = lookup_in(&vars).expect_err("a missing secret fails");
        let message = error.to_string();
        assert!(
            message.contains(SECRET_ACCESS_KEY) && message.contains(SECRET_ACCESS_KEY_FILE),
            "{message}"
        );
    }

    #[test]
    fn from_lookup_reads_the_secret_from_a_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("secret");
        std::fs::write(&file, "  file-secret\n").expect("the secret file is written");
        let file = file.to_str().expect("a utf-8 path");
        let mut vars: Vec<_> = COMPLETE
            .iter()
            .copied()
            .filter(|(name, _)| *name != SECRET_ACCESS_KEY)
            .collect();
        vars.push((SECRET_ACCESS_KEY_FILE, file));

        let config = lookup_in(&vars).expect("valid settings").expect("the bucket is set");
        assert_eq!(config.secret_access_key.expose_secret(), "file-secret");
        assert!(!format!("{config:?}").contains("file-secret"), "{config:?}");

        vars.push((SECRET_ACCESS_KEY, "other"));
        assert!(matches!(
            lookup_in(&vars),
            Err(OffsiteError::ConflictingVariables { .. })
        ));

        let missing = dir.path().join("absent");
        let vars = [
            &COMPLETE[..3],
            &[(SECRET_ACCESS_KEY_FILE, missing.to_str().expect("a utf-8 path"))],
        ]
        .concat();
        assert!(matches!(lookup_in(&vars), Err(OffsiteError::SecretFile { .. })));
    }

    #[test]
    fn from_lookup_defaults_and_http() {
        let config = lookup_in(COMPLETE).expect("valid settings").expect("the bucket is set");
        assert_eq!(config.region, DEFAULT_REGION);
        assert_eq!(config.prefix, "");
        assert!(!config.allow_http);
        assert_eq!(config.key_for("a.dump").as_ref(), "a.dump");

        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars: Vec<(&str, &str)> = COMPLETE.to_vec();
            vars.extend_from_slice(extra);
            lookup_in(&vars)
        };
        let config = with(&[(PREFIX, "/nightly//db/"), (REGION, "eu-central-1")])
            .expect("valid settings")
            .expect("the bucket is set");
        assert_eq!(
            (config.prefix.as_str(), config.region.as_str()),
            ("nightly/db", "eu-central-1")
        );
        assert_eq!(config.key_for("a.dump").as_ref(), "nightly/db/a.dump");

        for loopback in ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"] {
            let config = with(&[(ENDPOINT, loopback)])
                .expect("valid settings")
                .expect("the bucket is set");
            assert!(config.allow_http, "{loopback}");
        }
        let error = with(&[(ENDPOINT, "http://s3.internal:9000")]).expect_err("remote http is refused");
        assert!(error.to_string().contains(ALLOW_HTTP), "{error}");
        let config = with(&[(ENDPOINT, "http://s3.internal:9000"), (ALLOW_HTTP, "true")])
            .expect("valid settings")
            .expect("the bucket is set");
        assert!(config.allow_http);
        assert!(matches!(
            with(&[(ALLOW_HTTP, "maybe")]),
            Err(OffsiteError::InvalidVariable {
                variable: ALLOW_HTTP,
                ..
            })
        ));
        assert!(matches!(
            with(&[(ENDPOINT, "not a url")]),
            Err(OffsiteError::InvalidVariable { variable: ENDPOINT, .. })
        ));
    }

    #[test]
    fn variables_lists_every_setting() {
        for name in [
            ENDPOINT,
            BUCKET,
            PREFIX,
            REGION,
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            SECRET_ACCESS_KEY_FILE,
            ALLOW_HTTP,
        ] {
            assert!(OffsiteConfig::VARIABLES.contains(&name), "{name}");
        }
    }
}
