//! S3-compatible receivers, against a real S3 server on loopback (`test-s3`:
//! s3s-fs behind s3s's SigV4 check): each file becomes one object under a
//! key that carries its idempotency key, with its metadata; a compressed
//! body is stored under `.gz`; a missing bucket or a refused signature
//! sends the file to `error/` with the store's XML error; and a file sent
//! again after a sender died finds its object there (412 on the
//! conditional PUT) and counts as delivered without a second write.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::s3::S3Server;

use crate::support::dead_claim::{kill, live_claim};

const MINUTE: Duration = Duration::from_secs(60);

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The key each delivered file was given, by original name.
fn keys_in_done(spool: &TestSpool) -> Vec<(String, String)> {
    spool
        .names(State::Done)
        .iter()
        .map(|name| {
            let parsed = SpoolName::parse(OsStr::from_bytes(name));
            (
                String::from_utf8_lossy(parsed.original.as_bytes()).into_owned(),
                parsed.key.expect("a delivered file has a key").to_string(),
            )
        })
        .collect()
}

fn s3_config(store: &S3Server, spool: &TestSpool, receiver: &str, s3: &str) -> std::path::PathBuf {
    ConfigFile::new()
        .receiver("s3", &store.endpoint, receiver)
        .with(s3)
        .route_all("s3")
        .write(spool)
}

#[test]
fn each_file_is_one_object_gzipped_under_gz_with_its_key_and_metadata() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    // Empty, inline, and streamed (over 64 KiB) bodies; a name with a space.
    let bodies: Vec<(String, Vec<u8>)> = [0usize, 1000, 300_000]
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let name = format!("f {i}.json");
            (name, (0..*size).map(|j| (j * 7 + i) as u8).collect())
        })
        .collect();
    for (name, body) in &bodies {
        spool.put(name, body);
    }
    let config = s3_config(&store, &spool, "", &store.receiver_lines("landing", ""));
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();

    assert_eq!(
        spool.count(State::Done),
        bodies.len(),
        "{:?}",
        spool.census()
    );
    let objects = store.objects("landing");
    assert_eq!(objects.len(), bodies.len(), "{:?}", objects.keys());
    for (original, key) in keys_in_done(&spool) {
        let object = format!("{key}-{original}.gz");
        let stored = objects
            .get(&object)
            .unwrap_or_else(|| panic!("no {object:?} in {:?}", objects.keys()));
        let body = &bodies.iter().find(|(n, _)| *n == original).unwrap().1;
        assert_eq!(&gunzip(stored), body, "{object}");
        let meta = store.metadata("landing", &object);
        for wanted in [key.as_str(), original.as_str(), "application/gzip"] {
            assert!(meta.contains(wanted), "{wanted} not in {meta}");
        }
        assert!(
            !meta.contains("content_encoding"),
            "stored as a file: {meta}"
        );
    }
}

#[test]
fn captures_fill_the_key_and_an_unencoded_body_is_stored_as_it_is() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    spool.put("acme-orders.csv", &big);
    let config = ConfigFile::new()
        .receiver("s3", &store.endpoint, "compression = \"none\"")
        .with(&store.receiver_lines(
            "landing",
            "key = \"{tenant}/in/{key}-{filename}\"\nstorage_class = \"REDUCED_REDUNDANCY\"",
        ))
        .route("regex = '^(?<tenant>[^-]+)-'", "s3")
        .write(&spool);
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
    let [(original, key)] = keys_in_done(&spool).try_into().unwrap();
    let objects = store.objects("landing");
    let object = format!("acme/in/{key}-{original}");
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        vec![&object],
        "{:?}",
        spool.census()
    );
    assert_eq!(objects[&object], big);
    // s3s-fs keeps no storage class, but refuses one it does not know
    // (the refusal test): a delivery here means the class was sent, signed.
}

/// The store's refusals of a file reach the reason file as the store
/// wrote them, with the object's URL. A missing bucket's 404 is not among them: s3s-fs makes a
/// bucket's folder on a PUT, so the 404 is held to the answer table by the
/// sender's unit tests and to a real store here only by `--probe` (below).
#[test]
fn a_refused_storage_class_is_rejected_with_the_store_s_error() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    spool.put("a.json", b"{}");
    let s3 = store.receiver_lines("landing", "storage_class = \"DEEP_NOWHERE\"");
    let config = s3_config(&store, &spool, "", &s3);
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    );
    assert_eq!(spool.count(State::Error), 1, "{:?}", spool.census());
    let reason = reason_of(&spool.find(State::Error, "a.json"));
    assert_eq!(reason.class, ErrorClass::Rejected, "{reason:?}");
    assert_eq!(reason.status, Some(400), "{reason:?}");
    let body = reason.body.unwrap_or_default();
    assert!(body.contains("<Code>InvalidStorageClass</Code>"), "{body}");
    assert!(store.objects("landing").is_empty());
    // Where the object would be, as an operator would look for it: the
    // bucket, the file's own key and the suffix, not the routed URL with
    // a marker where the key goes.
    assert_eq!(
        reason.url.as_deref(),
        Some(
            format!(
                "{}/landing/{}-a.json.gz",
                store.endpoint,
                reason.key.unwrap()
            )
            .as_str()
        )
    );
}

/// A signature the store refuses (403 `SignatureDoesNotMatch`: a secret
/// that is not the key id's, as in a rotation done in the wrong order) is
/// a refusal of our credentials, as a 401 is: the file waits in
/// `incoming/`, never to `error/`, and the circuit opens with reason
/// `auth`; unit-sized and multipart bodies alike.
#[test]
fn a_refused_signature_makes_the_file_wait_not_fail() {
    let store = S3Server::start(&["landing"]);
    for size in [2usize, 6 << 20] {
        let spool = TestSpool::new();
        spool.put("a.json", &vec![b'x'; size]);
        let wrong_secret = "[receivers.s3.s3]\nbucket = \"landing\"\naccess_key_id = \"spoolpost-test\"\nsecret_access_key = \"wrong\"\nmultipart_above = \"5 MiB\"\npart_size = \"5 MiB\"";
        let config = s3_config(&store, &spool, "compression = \"none\"", wrong_secret);
        let out = run(
            sender(&spool).args(["--once", "--config"]).arg(&config),
            MINUTE,
        );
        assert_eq!(
            spool.count(State::Error),
            0,
            "{size}: {:?} {}",
            spool.census(),
            out.stderr
        );
        let [waiting] = spool.names(State::Incoming).try_into().unwrap();
        let name = SpoolName::parse(OsStr::from_bytes(&waiting));
        assert_eq!(name.attempts, 1, "{size}: {name:?}");
        assert_eq!(
            name.last_reason.as_deref(),
            Some("http-403"),
            "{size}: {name:?}"
        );
    }
    assert!(store.objects("landing").is_empty());
    assert!(
        store.uploads_left().is_empty(),
        "{:?}",
        store.uploads_left()
    );
}

#[test]
fn probe_says_whether_the_bucket_is_there_and_the_store_takes_our_signature() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let wrong_secret = "[receivers.s3.s3]\nbucket = \"landing\"\naccess_key_id = \"spoolpost-test\"\nsecret_access_key = \"wrong\"";
    for (s3, ok, said) in [
        (
            store.receiver_lines("landing", ""),
            true,
            "bucket landing exists",
        ),
        (store.receiver_lines("nosuch", ""), false, "no such bucket"),
        (wrong_secret.to_string(), false, "refused our signature"),
    ] {
        let config = s3_config(&store, &spool, "", &s3);
        let out = run(
            sender(&spool)
                .args(["--check", "--probe", "--config"])
                .arg(&config),
            MINUTE,
        );
        assert_eq!(out.status.success(), ok, "{}{}", out.stdout, out.stderr);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(text.contains(said), "{said} not in {text}");
    }
}

/// A sender killed after the store took the object but before the file
/// left `sending/` leaves its claim behind; the next sender sends the file
/// again, under the same key, and the conditional PUT finds it there: the
/// file is delivered and the object is not written a second time.
#[test]
fn a_file_sent_again_after_a_crash_finds_its_object_and_is_delivered_once() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    spool.put("a.json", b"{\"n\": 1}");
    let config = s3_config(&store, &spool, "", &store.receiver_lines("landing", ""));
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    let objects = store.objects("landing");
    assert_eq!(objects.len(), 1);
    let object = store
        .root
        .join("landing")
        .join(objects.keys().next().unwrap());
    let first = std::fs::metadata(&object).unwrap();

    // The crash: the delivered file back in a dead sender's claim, as it
    // was before the move to done/ that the kill prevented.
    let [done] = spool.names(State::Done).try_into().unwrap();
    let done_path = spool.dir(State::Done).join(OsStr::from_bytes(&done));
    let body = std::fs::read(&done_path).unwrap();
    let name = String::from_utf8(done.clone()).unwrap();
    let (_, owner) = live_claim(&spool.root, "dead", &[(name, body)]);
    std::fs::remove_file(&done_path).unwrap();
    kill(owner);

    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 1, "{:?}", spool.census());
    assert_eq!(spool.count(State::Error), 0, "{:?}", spool.census());
    assert_eq!(store.objects("landing").len(), 1, "one object, not two");
    let again = std::fs::metadata(&object).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec()),
        (first.ino(), first.mtime_nsec()),
        "the object was not written again"
    );
}

#[test]
fn files_left_by_a_sigkilled_sender_end_as_one_object_each() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let total = 1500;
    for i in 0..total {
        spool.put(format!("f{i:05}"), format!("{i}").as_bytes());
    }
    let config = s3_config(&store, &spool, "", &store.receiver_lines("landing", ""));
    let victim = spawn(
        sender(&spool)
            .args(["--concurrency", "16", "--config"])
            .arg(&config),
    );
    assert!(eventually(MINUTE, || store.objects("landing").len() >= 200));
    victim.signal(Signal::SIGKILL);
    let killed = victim.wait(MINUTE);
    assert_eq!(killed.status.code(), None, "killed by a signal");

    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    let link_fallback = std::env::var_os("SPOOLPOST_RENAME").is_some_and(|v| v == "link");
    let delivered: BTreeSet<(String, String)> = keys_in_done(&spool).into_iter().collect();
    let originals: BTreeSet<&String> = delivered.iter().map(|(o, _)| o).collect();
    assert_eq!(originals.len(), total, "{:?}", spool.census());
    if !link_fallback {
        assert_eq!(delivered.len(), total, "one key per file");
    }
    let objects = store.objects("landing");
    let expected: BTreeSet<String> = delivered
        .iter()
        .map(|(original, key)| format!("{key}-{original}.gz"))
        .collect();
    assert_eq!(
        objects.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the delivered files, each once"
    );
}

/// The credentials are secrets like a header's: a secret file rewritten
/// while the sender runs is read again after the store's 403, so files are
/// stored without a restart once the secret is right, the file refused
/// with the old secret among them (it waited, as for a 401).
#[test]
fn a_rewritten_secret_file_is_used_without_a_restart() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let secret = spool.side("etc").join("s3-secret");
    std::fs::write(&secret, "wrong\n").unwrap();
    let s3 = format!(
        "[receivers.s3.s3]\nbucket = \"landing\"\naccess_key_id = {:?}\nsecret_access_key = {{ file = {:?} }}",
        spoolpost_tests::s3::ACCESS_KEY_ID,
        path_str(&secret)
    );
    let config = s3_config(&store, &spool, "", &s3);
    let daemon = spawn(sender(&spool).arg("--config").arg(&config));
    spool.put("first.json", b"1");
    assert!(
        eventually(MINUTE, || spool.names(State::Incoming).iter().any(|n| {
            SpoolName::parse(OsStr::from_bytes(n))
                .last_reason
                .as_deref()
                == Some("http-403")
        })),
        "{:?}",
        spool.census()
    );
    std::fs::write(
        &secret,
        format!("{}\n", spoolpost_tests::s3::SECRET_ACCESS_KEY),
    )
    .unwrap();
    spool.put("second.json", b"2");
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == 2),
        "{:?}",
        spool.census()
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE);
    assert_eq!(spool.count(State::Error), 0, "{:?}", spool.census());
    let objects = store.objects("landing");
    assert_eq!(objects.len(), 2, "{:?}", objects.keys());
}

/// What the store cannot take is refused before a request, with a reason:
/// an unreadable secret at start (`--check` says so, exit 78), and a file
/// whose name makes a key that is not UTF-8, which S3 keys must be.
#[test]
fn a_missing_secret_file_or_a_non_utf8_key_is_refused_with_a_reason() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    let s3 = "[receivers.s3.s3]\nbucket = \"landing\"\naccess_key_id = \"id\"\nsecret_access_key = { file = \"/nonexistent/s3-secret\" }";
    let config = s3_config(&store, &spool, "", s3);
    let out = run(
        sender(&spool).args(["--check", "--config"]).arg(&config),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(
        out.stderr.contains("receiver s3: s3.secret_access_key")
            && out.stderr.contains("/nonexistent/s3-secret"),
        "{}",
        out.stderr
    );

    spool.put(OsStr::from_bytes(b"caf\xe9.json"), b"{}");
    let config = s3_config(&store, &spool, "", &store.receiver_lines("landing", ""));
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    let [name] = spool.names(State::Error).try_into().unwrap();
    let reason = reason_of(&spool.dir(State::Error).join(OsStr::from_bytes(&name)));
    assert_eq!(reason.class, ErrorClass::Unsendable, "{reason:?}");
    assert!(reason.message.contains("not UTF-8"), "{reason:?}");
    assert!(store.objects("landing").is_empty());
}

/// A capture that is empty at the start of the key would make a key
/// starting with `/`, which, joined to the bucket's URL, names another
/// bucket: the file goes to `error/` with a reason, and nothing is
/// written anywhere in the store.
#[test]
fn an_empty_capture_cannot_send_a_file_to_another_bucket() {
    let store = S3Server::start(&["landing"]);
    let spool = TestSpool::new();
    spool.put("-a.json", b"{}");
    let config = ConfigFile::new()
        .receiver("s3", &store.endpoint, "")
        .with(&store.receiver_lines("landing", "key = \"{tenant}/{key}-{filename}\""))
        .route("regex = '^(?<tenant>[a-z]*)-'", "s3")
        .write(&spool);
    run(
        sender(&spool).args(["--once", "--config"]).arg(&config),
        MINUTE,
    )
    .assert_success();
    let reason = reason_of(&spool.find(State::Error, "-a.json"));
    assert_eq!(reason.class, ErrorClass::Unsendable, "{reason:?}");
    assert!(reason.message.contains("starts with /"), "{reason:?}");
    let buckets: Vec<_> = std::fs::read_dir(&store.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.as_bytes().starts_with(b"."))
        .collect();
    assert_eq!(buckets, vec![OsStr::new("landing")]);
    assert!(store.objects("landing").is_empty());
}
