//! A local S3-compatible server for tests: moto (`pip install 'moto[server]'`) on a free loopback
//! port, with one bucket and an IAM user whose key pair may use it. Killed on drop. A missing
//! `moto_server` fails the test that needs it; it never skips.

use std::io::{self, Read as _, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server.
pub const INSTALL_HINT: &str = "pip install 'moto[server]'";

/// A moto S3 server on a free loopback port, with one bucket and an IAM user whose key pair
/// may use it. Killed on drop.
///
/// With `authenticate`, moto's IAM authentication is switched on once the bucket and user
/// exist, so request signatures are checked. Moto then also rejects correctly signed
/// listings under a prefix (it recomputes the signature over the decoded `prefix=a/b/` query,
/// not the `prefix=a%2Fb%2F` that was signed), so only the secret test authenticates.
pub struct S3Server {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// The bucket it holds.
    pub bucket: String,
    /// The IAM user's access key.
    pub access_key_id: String,
    /// The IAM user's secret key.
    pub secret_access_key: String,
}

impl S3Server {
    /// Starts moto with `bucket`; with `authenticate`, request signatures are checked.
    ///
    /// # Panics
    /// When `moto_server` is missing or does not answer within 20 s.
    #[must_use]
    pub fn start(bucket: &str, authenticate: bool) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run moto_server ({error}); install it with: {INSTALL_HINT}"));
        let mut moto = Self {
            child,
            port,
            bucket: bucket.to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        moto.wait_until_up();
        moto.set_up(authenticate);
        moto
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("moto_server's status") {
                panic!("moto_server exited ({status}) before answering; is moto installed? {INSTALL_HINT}");
            }
            if self.request("GET", "/moto-api/", &[], "").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {} within 20 s ({INSTALL_HINT})",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates the bucket and an IAM user with full S3 access while requests are still
    /// unauthenticated, then switches authentication on if asked to.
    fn set_up(&mut self, authenticate: bool) {
        let path = format!("/{}", self.bucket);
        self.expect_ok("PUT", &path, &[], "");
        // Moto routes an IAM call by the service in the credential scope; unchecked for now.
        let iam = [
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            ),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let form = "Version=2010-05-08&UserName=backup";
        self.expect_ok("POST", "/", &iam, &format!("Action=CreateUser&{form}"));
        let key = self.expect_ok("POST", "/", &iam, &format!("Action=CreateAccessKey&{form}"));
        self.access_key_id = between(&key, "<AccessKeyId>", "</AccessKeyId>");
        self.secret_access_key = between(&key, "<SecretAccessKey>", "</SecretAccessKey>");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let body = format!(
            "Action=PutUserPolicy&{form}&PolicyName=s3&PolicyDocument={}",
            form_encode(policy)
        );
        self.expect_ok("POST", "/", &iam, &body);
        if authenticate {
            self.expect_ok("POST", "/moto-api/reset-auth", &[("Content-Type", "text/plain")], "0");
        }
    }

    /// Sends a request and asserts a 200 answer; returns the body.
    ///
    /// # Panics
    /// When the request fails or the answer is not 200.
    fn expect_ok(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
        let (status, response) = self
            .request(method, path, headers, body)
            .unwrap_or_else(|error| panic!("{method} {path} to moto: {error}"));
        assert_eq!(status, 200, "{method} {path} to moto answered {status}: {response}");
        response
    }

    /// A minimal HTTP/1.1 request; returns the status and the body.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> io::Result<(u16, String)> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = vec![format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        )];
        request.extend(headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")));
        request.push(format!("\r\n{body}"));
        stream.write_all(request.concat().as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP response: {response:?}")))?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, body.to_owned()))
    }

    /// The endpoint URL.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `BACKUP_S3_*` variables that point at this server, with `prefix`.
    #[must_use]
    pub fn variables(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("BACKUP_S3_ENDPOINT", self.endpoint()),
            ("BACKUP_S3_BUCKET", self.bucket.clone()),
            ("BACKUP_S3_PREFIX", prefix.to_owned()),
            ("BACKUP_S3_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("BACKUP_S3_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).map(|at| at + start.len());
    let value = from.and_then(|from| text[from..].find(end).map(|to| &text[from..from + to]));
    value.unwrap_or_else(|| panic!("no {start} in {text}")).to_owned()
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
