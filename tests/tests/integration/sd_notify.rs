//! sd_notify: READY, STATUS, WATCHDOG and STOPPING as a service manager
//! reads them from a real datagram socket (a path or an abstract name).

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn the_collector_notifies_ready_watchdog_and_stopping() {
    let spool = TestSpool::new();
    let notify = NotifySocket::new(&spool);
    let proc = spawn(
        collector(&spool)
            .arg("--source")
            .arg(spool.side("in"))
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "200000"),
    );
    let ready = notify.expect("READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    notify.expect("WATCHDOG=1");
    notify.expect("WATCHDOG=1");
    proc.signal(Signal::SIGTERM);
    notify.expect("STOPPING=1");
    proc.wait(LIMIT).assert_success();
}

#[test]
fn the_sender_notifies_ready_and_stopping_through_an_abstract_socket() {
    let spool = TestSpool::new();
    let name = format!("spoolpost-test-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &name,
        )
        .unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let receiver = Receiver::start();
    let proc = spawn(
        sender(&spool)
            .args(["--url", &receiver.url("/in")])
            .env("NOTIFY_SOCKET", format!("@{name}")),
    );
    let notify = NotifySocket {
        socket,
        path: Default::default(),
    };
    notify.expect("READY=1");
    spool.put("a", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    notify.expect("STATUS=0 in flight, 0 waiting, 0 circuits open");
    proc.signal(Signal::SIGHUP);
    notify.expect("RELOADING=1");
    notify.expect("READY=1");
    proc.signal(Signal::SIGTERM);
    notify.expect("STOPPING=1");
    proc.wait(LIMIT).assert_success();
}
