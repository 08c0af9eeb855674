//! A small disk for tests of a full disk: a tmpfs mounted on a temporary directory.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

/// A small file system of its own (a tmpfs on a temporary directory), for tests of a full disk. Needs root
/// (tests run as root here and in CI). Unmounted on drop (lazily if still busy), also when the
/// test panics; the directory is removed after that.
pub struct SmallDisk {
    directory: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount`'s syntax, for example `8m`), owned by `owner`.
    ///
    /// # Panics
    /// When `mount` or `chown` fails (not root).
    #[must_use]
    pub fn mount(size: &str, owner: &str) -> Self {
        let directory = tempfile::Builder::new()
            .prefix("small-disk-")
            .tempdir()
            .expect("a temporary directory for the mount");
        let mount = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(directory.path())
            .output()
            .expect("mount runs");
        let disk = Self { directory };
        assert!(
            mount.status.success(),
            "mount -t tmpfs -o size={size} tmpfs {} failed (the test needs root): {}",
            disk.path().display(),
            String::from_utf8_lossy(&mount.stderr)
        );
        let chown = Command::new("chown")
            .arg(owner)
            .arg(disk.path())
            .status()
            .expect("chown runs");
        assert!(
            chown.success(),
            "chown {owner} {} failed: {chown}",
            disk.path().display()
        );
        disk
    }

    /// Where it is mounted.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    /// Fills the disk with a file, then shortens it to leave `free` bytes; returns its size.
    ///
    /// # Panics
    /// When the filler file cannot be made.
    #[must_use]
    pub fn fill_leaving(&self, free: u64) -> u64 {
        const CHUNK: usize = 64 * 1024;
        // A bound well above any tmpfs these tests mount (4 GiB).
        const MAX_CHUNKS: usize = 65_536;
        let path = self.path().join("filler");
        let mut file = File::create(&path).expect("create the filler file");
        let chunk = vec![0xa5_u8; CHUNK];
        let mut written: u64 = 0;
        for _ in 0..MAX_CHUNKS {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(count) => written += u64::try_from(count).expect("a chunk size"),
            }
        }
        let size = written.saturating_sub(free);
        file.set_len(size).expect("shorten the filler file");
        file.sync_all().expect("sync the filler file");
        size
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Never panics: a panic here, while a failed test unwinds, would abort the process.
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}
