//! Crashes and restarts: kill -9 of the daemon, of its relay; SIGTERM;
//! the state file (seed migration, corruption).

use crate::common::*;
use std::time::Duration;

const ON_AIR: Duration = Duration::from_secs(20);
const QUICK: Duration = Duration::from_secs(10);

/// queue.json and queue.journal of the daemon's state dir, concatenated.
fn state_text(d: &Daemon) -> String {
    ["queue.json", "queue.journal"]
        .iter()
        .map(|f| std::fs::read_to_string(d.state_dir().join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn gone_within(pid: u32, t: Duration) -> bool {
    wait_for(t, Duration::from_millis(10), || {
        (!pid_alive(pid)).then_some(())
    })
    .is_some()
}

#[test]
fn kill9_no_orphan_relay_and_restart_keeps_queue_and_output() {
    let _turn = light_turn();
    let mut rig = Rig::start("");
    let mut a = rig.join("alice", SIZE_A);
    let _b = rig.join("bob", SIZE_B);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let relay = rig.daemon.wait_relay(QUICK);

    rig.daemon.kill9();
    // No orphan relay: the relay dies with the daemon (parent-death signal).
    assert!(
        gone_within(relay, Duration::from_secs(2)),
        "relay {relay} outlived kill -9 of the daemon"
    );
    // The publishers themselves stay connected to nginx.
    assert!(a.is_running());

    rig.daemon.restart();
    assert_eq!(rig.daemon.queue(), ["alice", "bob"], "queue after restart");
    let relay2 = rig.daemon.wait_relay(ON_AIR);
    assert_ne!(relay, relay2);
    rig.assert_on_air(SIZE_A, ON_AIR);

    // The restored queue still works: alice leaves, bob goes on air.
    a.stop();
    rig.daemon.wait_queue(&["bob"], QUICK);
    rig.assert_on_air(SIZE_B, ON_AIR);
}

#[test]
fn relay_crash_is_restarted() {
    let _turn = light_turn();
    let rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    rig.assert_on_air(SIZE_A, ON_AIR);
    let relay = rig.daemon.wait_relay(QUICK);
    let restarts0 = rig.daemon.status()["on_air"]["relay"]["restarts"]
        .as_u64()
        .unwrap_or(0);

    assert!(signal(relay, libc::SIGKILL));
    assert!(gone_within(relay, Duration::from_secs(2)));
    let relay2 = wait_for(ON_AIR, Duration::from_millis(50), || {
        let pid = rig.daemon.relay_pid()?;
        (pid != relay && pid_alive(pid) && rig.daemon.relay_state().as_deref() == Some("running"))
            .then_some(pid)
    })
    .unwrap_or_else(|| panic!("no new relay; status {}", rig.daemon.status()));
    assert_ne!(relay, relay2);
    rig.assert_on_air(SIZE_A, ON_AIR);
    assert_eq!(rig.daemon.queue(), ["alice"]);
    let restarts = rig.daemon.status()["on_air"]["relay"]["restarts"]
        .as_u64()
        .unwrap_or(0);
    assert!(restarts > restarts0, "restarts {restarts0} → {restarts}");
    // The failure is logged with the relay's last lines.
    assert!(
        rig.daemon.log().to_lowercase().contains("relay"),
        "{}",
        rig.daemon.log()
    );
}

#[test]
fn sigterm_stops_the_relay_and_state_survives() {
    let _turn = light_turn();
    let mut rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    let _b = rig.join("bob", SIZE_B);
    let relay = rig.daemon.wait_relay(ON_AIR);
    // Durable before acknowledged: the state files (snapshot queue.json +
    // journal queue.journal) already name both.
    let text = state_text(&rig.daemon);
    assert!(text.contains("alice") && text.contains("bob"), "{text}");

    let st = rig.daemon.terminate();
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(
        gone_within(relay, Duration::from_secs(2)),
        "relay {relay} outlived SIGTERM"
    );

    rig.daemon.restart();
    assert_eq!(rig.daemon.queue(), ["alice", "bob"]);
    rig.assert_on_air(SIZE_A, ON_AIR);
}

#[test]
fn seed_queue_file_is_migrated() {
    let _turn = light_turn();
    let mut rig = Rig::start("");
    let _a = rig.join("alice", SIZE_A);
    let _b = rig.join("bob", SIZE_B);
    rig.daemon.kill9();
    // Replace the state with the seed's format: a JSON array of keys.
    let dir = rig.daemon.state_dir();
    std::fs::remove_file(dir.join("queue.json")).expect("queue.json existed");
    let _ = std::fs::remove_file(dir.join("queue.journal"));
    std::fs::write(dir.join("QUEUE.json"), r#"["bob","alice"]"#).unwrap();
    rig.daemon.restart();
    assert_eq!(rig.daemon.queue(), ["bob", "alice"]);
    rig.assert_on_air(SIZE_B, ON_AIR);
    // The migrated state is written in the new format, the seed file is
    // not read again.
    let text = state_text(&rig.daemon);
    assert!(text.contains("bob") && text.contains("alice"), "{text}");
    assert!(
        !dir.join("QUEUE.json").exists(),
        "QUEUE.json still in place"
    );
}

#[test]
fn corrupt_state_is_kept_aside_not_a_crash_loop() {
    let _turn = light_turn();
    let mut rig = Rig::start("[relay]\nmax_failures = 1000\n");
    assert_eq!(rig.daemon.raw_publish("alice", 1).status, 200);
    rig.daemon.kill9();
    let dir = rig.daemon.state_dir();
    let garbage = "{\"version\": 1, \"queue\": [ this is not json";
    std::fs::write(dir.join("queue.json"), garbage).unwrap();
    // Without the journal (which would replay alice) the queue is empty.
    let _ = std::fs::remove_file(dir.join("queue.journal"));
    rig.daemon.restart();
    assert_eq!(rig.daemon.get("/healthz").status, 200);
    assert_eq!(rig.daemon.queue(), Vec::<String>::new());
    // The corrupt bytes are kept somewhere in the state dir, not lost.
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t == garbage)
                .unwrap_or(false)
        });
    assert!(kept, "corrupt queue.json not kept aside in {dir:?}");
    // And the daemon works: a new publish is durable.
    assert_eq!(rig.daemon.raw_publish("bob", 2).status, 200);
    assert_eq!(rig.daemon.queue(), ["bob"]);
}
