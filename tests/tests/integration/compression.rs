//! The body's encoding (`compression`): zstd and identity as the receiver
//! decodes them (gzip, the default, is in delivery).

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use std::time::Duration;
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn zstd_bodies_are_decoded_by_the_receiver_and_none_sends_identity() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let cfg = |compression: &str, path: &str| {
        ConfigFile::to("r", &rx.url(path))
            .with(compression)
            .write(&spool)
    };
    let zstd = cfg("compression = \"zstd\"\ncompression_level = 5", "/zstd");
    spool.put("small.json", b"{\"small\": true}");
    spool.put("big.bin", &big);
    run(
        sender(&spool).arg("--once").arg("--config").arg(&zstd),
        MINUTE,
    )
    .assert_success();
    let none = cfg("compression = \"none\"", "/none");
    spool.put("plain.json", b"plain body");
    run(
        sender(&spool).arg("--once").arg("--config").arg(&none),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 3, "{:?}", spool.census());
    let received = rx.received();
    let got = |path: &str, len: u64| {
        received
            .iter()
            .find(|r| r.path == path && r.body_len == len)
            .unwrap_or_else(|| panic!("nothing of {len} bytes at {path}"))
            .clone()
    };
    let small = got("/zstd", 15);
    assert_eq!(small.header("content-encoding"), Some("zstd"));
    assert_eq!(small.body, b"{\"small\": true}");
    let big_rx = got("/zstd", big.len() as u64);
    assert_eq!(big_rx.header("content-encoding"), Some("zstd"));
    assert_eq!(big_rx.body_crc, {
        let mut crc = flate2::Crc::new();
        crc.update(&big);
        crc.sum()
    });
    assert!(
        big_rx.wire_len < big.len() as u64 / 4,
        "{}",
        big_rx.wire_len
    );
    let plain = got("/none", 10);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, b"plain body");
    assert_eq!(plain.wire_len, 10);
}
