//! Socket activation as systemd does it (`motherstream.socket`): this test
//! holds the listening socket, as systemd would, and starts the real daemon
//! with it as descriptor 3 (`LISTEN_FDS=1`, `LISTEN_PID` = the daemon's
//! pid). A `kill -9` and a stop-and-start (`systemctl restart`) with a
//! client opening a connection every 20 ms: no connection is refused, the
//! kernel queues them while the daemon is down. The log says which socket
//! is used and warns when it differs from `[http] listen`.

use std::time::{Duration, Instant};

use crate::common::activated::Activated;
use crate::common::prober::Prober;
use crate::common::*;

#[test]
fn restart_and_kill9_refuse_no_connection() {
    let _turn = heavy_turn();
    let mut a = Activated::new(daemon_bin());
    let nginx = Nginx::start(a.port);
    // First start: [http] listen names another port; the socket wins and
    // the mismatch is logged.
    a.configure(&nginx, free_port(), "");
    a.spawn();
    assert!(
        a.log()
            .contains("the socket from systemd (motherstream.socket)"),
        "{}",
        a.log()
    );
    assert!(
        a.log().contains("differs from [http] listen"),
        "{}",
        a.log()
    );
    a.terminate();
    a.configure(&nginx, a.port, "");

    a.spawn();
    let prober = Prober::start(a.port);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    a.kill9();
    a.spawn();
    let kill9_back = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    a.terminate();
    a.spawn();
    let restart_back = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let probes = prober.finish();
    let refused = probes
        .iter()
        .filter(|p| matches!(&p.outcome, Err(e) if e.contains("refused")))
        .count();
    let not_200: Vec<_> = probes
        .iter()
        .filter(|p| matches!(p.outcome, Ok(st) if st != 200))
        .collect();
    // A request being answered at the instant of SIGKILL dies with the
    // process (reset): that is the kill, not a refusal.
    let lost = probes
        .iter()
        .filter(|p| matches!(&p.outcome, Err(e) if !e.contains("refused")))
        .count();
    let slowest = probes.iter().map(|p| p.took).max().unwrap_or_default();
    eprintln!(
        "socket activation: kill -9 → serving again in {:.0} ms, SIGTERM + start in {:.0} ms; {} probes: {refused} refused, {} not 200, {lost} reset in flight at the kill; slowest {:.0} ms",
        kill9_back.as_secs_f64() * 1000.0,
        restart_back.as_secs_f64() * 1000.0,
        probes.len(),
        not_200.len(),
        slowest.as_secs_f64() * 1000.0
    );
    for l in a.log().lines().filter(|l| {
        [
            "SIGTERM",
            "stopped accepting",
            "shutting down",
            "stopped;",
            "starting:",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        eprintln!("  log: {l}");
    }
    assert_eq!(refused, 0, "connections refused");
    assert!(not_200.is_empty(), "answered but not 200: {not_200:?}");
    assert!(lost <= 1, "{lost} connections lost (one kill -9)");
    assert!(probes.len() >= 20, "the prober ran: {}", probes.len());
    assert!(
        a.log().contains("stopped accepting: connections wait"),
        "the stop paused the accept loop"
    );
}
