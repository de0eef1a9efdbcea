//! S3-compatible receivers' large and compressed bodies, against the real
//! `test-s3` (s3s-fs) with a small `multipart_above`: a file above it goes
//! as a multipart upload and is stored byte for byte; a part the store
//! fails aborts the upload and the file is retried; a sender killed in
//! mid-upload leaves an upload that the next sender to send the file
//! aborts, so the store keeps no parts and one object; and a compressed
//! body goes in one PUT with its `Content-Length`.

use std::io::Read;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_protocol::uploads::UPLOADS_DIR;
use spoolpost_tests::harness::*;
use spoolpost_tests::s3::S3Server;

const MINUTE: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// Bytes that do not compress: gzip of them is larger than a part.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// An s3 receiver with parts above 5 MiB, of 5 MiB (S3's least).
fn parts_config(store: &S3Server, spool: &TestSpool, compression: &str) -> std::path::PathBuf {
    ConfigFile::new()
        .sender("backoff_initial = \"100ms\"\nbackoff_max = \"200ms\"")
        .receiver(
            "s3",
            &store.endpoint,
            &format!("compression = {compression:?}"),
        )
        .with(&store.receiver_lines(
            "landing",
            "multipart_above = \"5 MiB\"\npart_size = \"5 MiB\"",
        ))
        .route_all("s3")
        .write(spool)
}

fn uploads_recorded(spool: &TestSpool) -> usize {
    std::fs::read_dir(spool.root.join(UPLOADS_DIR)).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

fn requests_with(store: &S3Server, text: &str) -> usize {
    store.requests().iter().filter(|r| r.contains(text)).count()
}

#[test]
fn a_file_above_multipart_above_is_uploaded_in_parts_and_stored_byte_for_byte() {
    for (compression, suffix) in [("none", ""), ("gzip", ".gz")] {
        let store = S3Server::start(&["landing"]);
        let spool = TestSpool::new();
        let body = noise(12 * MIB + 123, 7);
        spool.put("big.bin", &body);
        let config = parts_config(&store, &spool, compression);
        let out = run(
            sender(&spool).args(["--once", "--config"]).arg(&config),
            MINUTE,
        );
        out.assert_success();
        assert_eq!(
            spool.count(State::Done),
            1,
            "{compression}: {:?} {}",
            spool.census(),
            out.stderr
        );
        let objects = store.objects("landing");
        assert_eq!(objects.len(), 1, "{:?}", objects.keys());
        let (key, stored) = objects.iter().next().unwrap();
        assert!(key.ends_with(&format!("-big.bin{suffix}")), "{key}");
        let stored = if suffix.is_empty() {
            stored.clone()
        } else {
            gunzip(stored)
        };
        assert!(stored == body, "{compression}: the object is not the file");
        // Three parts of at most 5 MiB, each with its length; completed.
        assert_eq!(
            requests_with(&store, "partNumber=3"),
            1,
            "{:?}",
            store.requests()
        );
        assert_eq!(
            requests_with(&store, "partNumber=4"),
            0,
            "{:?}",
            store.requests()
        );
        for part in store
            .requests()
            .iter()
            .filter(|r| r.contains("partNumber="))
        {
            assert!(!part.ends_with("content-length=-"), "{part}");
        }
        assert!(
            store.uploads_left().is_empty(),
            "{:?}",
            store.uploads_left()
        );
        assert_eq!(uploads_recorded(&spool), 0, "the spool's record is removed");
        let meta = store.metadata("landing", key);
        if !suffix.is_empty() {
            assert!(
                meta.contains("application/gzip"),
                "the content type too: {meta}"
            );
        }
        assert!(
            meta.contains("big.bin"),
            "the metadata goes with the upload: {meta}"
        );
    }
}

#[test]
fn a_part_the_store_fails_aborts_the_upload_and_the_file_is_sent_again() {
    let store = S3Server::start_with(&["landing"], &["--fail-part", "2"]);
    let spool = TestSpool::new();
    let body = noise(11 * MIB, 3);
    spool.put("big.bin", &body);
    let config = parts_config(&store, &spool, "none");
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    assert_eq!(
        spool.count(State::Incoming),
        1,
        "retried: {:?}",
        spool.census()
    );
    assert!(
        store.uploads_left().is_empty(),
        "the failed upload was aborted: {:?}",
        store.uploads_left()
    );
    assert_eq!(
        requests_with(&store, "DELETE "),
        1,
        "{:?}",
        store.requests()
    );
    assert_eq!(uploads_recorded(&spool), 0);
    assert!(store.objects("landing").is_empty());

    assert!(eventually(MINUTE, || {
        run(
            sender(&spool).args(["--once", "--config"]).arg(&config),
            MINUTE,
        )
        .assert_success();
        spool.count(State::Done) == 1
    }));
    let objects = store.objects("landing");
    assert_eq!(objects.len(), 1);
    assert!(*objects.values().next().unwrap() == body);
    assert!(
        store.uploads_left().is_empty(),
        "{:?}",
        store.uploads_left()
    );
}

/// The sender is killed while the store holds part 2's request (test-s3
/// `--stall-part 2`): part 1 is stored, the upload open. The claim goes
/// back to `incoming/` when the next sender starts, which finds the
/// upload's record in the spool by the file's key and aborts it before
/// uploading the file afresh.
#[test]
fn a_sender_killed_mid_upload_leaves_no_parts_once_the_file_is_sent_again() {
    let store = S3Server::start_with(&["landing"], &["--stall-part", "2"]);
    let spool = TestSpool::new();
    let body = noise(11 * MIB, 5);
    spool.put("big.bin", &body);
    let config = parts_config(&store, &spool, "none");
    let victim = spawn(sender(&spool).args(["--config"]).arg(&config));
    assert!(
        eventually(MINUTE, || requests_with(&store, "partNumber=2") == 1),
        "{:?}",
        store.requests()
    );
    assert_eq!(uploads_recorded(&spool), 1, "recorded before any part");
    victim.signal(Signal::SIGKILL);
    assert_eq!(
        victim.wait(MINUTE).status.code(),
        None,
        "killed by a signal"
    );
    let orphaned = store.uploads_left();
    assert!(!orphaned.is_empty(), "the kill left an upload open");

    let out = run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(
        spool.count(State::Done),
        1,
        "{:?} {}",
        spool.census(),
        out.stderr
    );
    assert!(
        store.uploads_left().is_empty(),
        "left behind: {:?} (was {orphaned:?})",
        store.uploads_left()
    );
    assert_eq!(uploads_recorded(&spool), 0);
    let objects = store.objects("landing");
    assert_eq!(objects.len(), 1, "one object: {:?}", objects.keys());
    assert!(*objects.values().next().unwrap() == body);
}

/// AWS refuses a PUT without a length (411); a compressed body over 64 KiB
/// used to be streamed without one. It is compressed first (a part at a
/// time), so the PUT says its length.
#[test]
fn a_compressed_body_goes_in_one_put_with_its_content_length() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let body: Vec<u8> = (0..400_000u32).map(|i| (i % 97) as u8).collect();
    spool.put("mid.json", &body);
    let config = parts_config(&store, &spool, "gzip");
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    let objects = store.objects("landing");
    assert_eq!(objects.len(), 1, "{:?}", spool.census());
    let stored = objects.values().next().unwrap();
    assert_eq!(gunzip(stored), body);
    let puts: Vec<String> = store
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT "))
        .collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert!(
        puts[0].ends_with(&format!("content-length={}", stored.len())),
        "{puts:?}"
    );
}

/// A record in `uploads/` whose upload the store does not know (one
/// completed just before a crash, or already aborted) must not stop the
/// file: s3s-fs refuses to abort an unknown id (403 `AccessDenied`), AWS
/// answers 404 `NoSuchUpload`; either way the record is dropped and the
/// file sent. Nor must a garbled record, which names no upload at all.
#[test]
fn a_recorded_upload_the_store_does_not_know_or_a_garbled_record_does_not_stop_the_file() {
    for garbled in [false, true] {
        let store = S3Server::start_with(&["landing"], &["--fail-part", "2"]);
        let spool = TestSpool::new();
        let body = noise(11 * MIB, 9);
        spool.put("big.bin", &body);
        let config = parts_config(&store, &spool, "none");
        run(
            sender(&spool).args(["--once", "--config"]).arg(&config),
            MINUTE,
        )
        .assert_success();
        let [waiting] = spool.names(State::Incoming).try_into().unwrap();
        let name = spoolpost_protocol::name::SpoolName::parse(std::ffi::OsStr::new(
            std::str::from_utf8(&waiting).unwrap(),
        ));
        let key = name.key.unwrap().to_string();
        spoolpost_protocol::uploads::write(
            &spool.root,
            &key,
            "s3",
            &spoolpost_protocol::uploads::Upload {
                bucket: "landing".into(),
                object: format!("{key}-big.bin"),
                upload_id: "0b9a6c3e-0000-4000-8000-000000000000".into(),
            },
        )
        .unwrap();
        if garbled {
            let record = spoolpost_protocol::uploads::path(&spool.root, &key, "s3");
            std::fs::write(record, b"{\"bucket\": \"landing\", \"obj").unwrap();
        }

        assert!(
            eventually(Duration::from_secs(20), || {
                run(
                    sender(&spool).args(["--once", "--config"]).arg(&config),
                    MINUTE,
                )
                .assert_success();
                spool.count(State::Done) == 1
            }),
            "garbled {garbled}: {:?}",
            spool.census()
        );
        assert_eq!(uploads_recorded(&spool), 0);
        assert!(*store.objects("landing").values().next().unwrap() == body);
    }
}

#[test]
fn a_part_size_s3_cannot_take_is_refused_by_check() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    for (lines, said) in [
        ("part_size = \"1 MiB\"", "s3.part_size"),
        ("multipart_above = \"6 GiB\"", "s3.multipart_above"),
        // The size parser's error names the line, not the key.
        ("part_size = \"lots\"", "\"lots\""),
    ] {
        let config = ConfigFile::new()
            .receiver("s3", &store.endpoint, "")
            .with(&store.receiver_lines("landing", lines))
            .route_all("s3")
            .write(&spool);
        let out = run(
            sender(&spool).args(["--check", "--config"]).arg(&config),
            MINUTE,
        );
        assert_eq!(
            out.status.code(),
            Some(78),
            "{lines}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.contains(said), "{lines}: {}", out.stderr);
    }
}
