//! The S3-compatible server for the object-storage tests and the benchmark:
//! `test-s3` (s3s-fs, tests/s3-server) started as a process on loopback
//! with one access key, its buckets folders under a temporary root, and
//! what it stored read back from that root.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::s3_server_bin;

pub const ACCESS_KEY_ID: &str = "spoolpost-test";
pub const SECRET_ACCESS_KEY: &str = "spoolpost-test-secret";

pub struct S3Server {
    child: Child,
    _dir: tempfile::TempDir,
    /// Where the buckets are: ROOT/BUCKET/KEY, and s3s-fs's records of
    /// each object's metadata beside them.
    pub root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    log: PathBuf,
}

impl S3Server {
    /// Starts the server with `buckets` made, once it accepts connections.
    pub fn start(buckets: &[&str]) -> S3Server {
        S3Server::start_with(buckets, &[])
    }

    /// Starts the server with `buckets` made and test-s3's further `args`
    /// (`--fail-part N`, `--stall-part N`; every request is logged, see
    /// [`S3Server::requests`]).
    pub fn start_with(buckets: &[&str], args: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut cmd = Command::new(s3_server_bin());
        cmd.args(["--root", root.to_str().unwrap()]).args([
            "--access-key",
            ACCESS_KEY_ID,
            "--secret-key",
            SECRET_ACCESS_KEY,
        ]);
        for bucket in buckets {
            cmd.args(["--bucket", bucket]);
        }
        // The log lives beside the root, not in it, where it would be a bucket.
        let log = dir.path().with_extension("requests");
        cmd.arg("--log").arg(&log).args(args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start test-s3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("test-s3 said {line:?}"))
            .to_string();
        S3Server {
            child,
            _dir: dir,
            root,
            endpoint,
            log,
        }
    }

    /// Every request the server had so far, one line each:
    /// `METHOD PATH?QUERY content-length=LEN` (`-` without one).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The multipart uploads the store holds (started and neither
    /// completed nor aborted): s3s-fs keeps one record per upload,
    /// `.upload-ID.json`, and its parts as `.upload_id-ID.part-N`, at its
    /// root. s3s-fs does not answer ListMultipartUploads, so this is how a
    /// test sees them.
    pub fn uploads_left(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload-") || n.starts_with(".upload_id-"))
            .collect();
        left.sort();
        left
    }

    /// The `[receivers.NAME.s3]` lines for `bucket` with this server's
    /// key, and `extra` lines besides.
    pub fn receiver_lines(&self, bucket: &str, extra: &str) -> String {
        format!(
            "[receivers.s3.s3]\nbucket = {bucket:?}\naccess_key_id = {ACCESS_KEY_ID:?}\nsecret_access_key = {SECRET_ACCESS_KEY:?}\n{extra}"
        )
    }

    /// Every object in `bucket` by key, with its bytes.
    pub fn objects(&self, bucket: &str) -> BTreeMap<String, Vec<u8>> {
        let mut found = BTreeMap::new();
        let top = self.root.join(bucket);
        walk(&top, &top, &mut found);
        found
    }

    /// What s3s-fs recorded of an object's headers and user metadata (its
    /// JSON record), empty when it has none.
    pub fn metadata(&self, bucket: &str, key: &str) -> String {
        let name = format!(
            ".bucket-{}.object-{}.metadata.json",
            encode(bucket),
            encode(key)
        );
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}

/// s3s-fs's encoding of a bucket or key in its record's name: base64,
/// URL-safe alphabet, no padding.
fn encode(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn walk(top: &Path, dir: &Path, found: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(top, &path, found);
        } else {
            let key = path
                .strip_prefix(top)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.insert(key, std::fs::read(&path).unwrap());
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn records_are_named_as_s3s_fs_names_them() {
        assert_eq!(super::encode("bucket"), "YnVja2V0");
        assert_eq!(super::encode("a/b?"), "YS9iPw");
        assert_eq!(super::encode("ab"), "YWI");
    }
}
