//! A client opening a new connection to `/healthz` every 20 ms (nginx's
//! hooks are one connection each) and recording every outcome: a refused
//! connection, a reset, a non-200 or a slow answer shows in the record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{parse_resp, request_bytes, send_raw};

/// One probe: how long it took and what came back.
#[derive(Debug, Clone)]
pub struct Probe {
    pub took: Duration,
    pub outcome: Result<u16, String>,
}

pub struct Prober {
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    pub fn start(port: u16) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (stop.clone(), probes.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let at = std::time::Instant::now();
                let outcome = send_raw(
                    port,
                    &request_bytes("GET", "/healthz", &[], b""),
                    Duration::from_secs(5),
                )
                .map_err(|e| e.to_string())
                .and_then(|raw| match parse_resp(&raw).status {
                    0 => Err("no answer".to_string()),
                    st => Ok(st),
                });
                let took = at.elapsed();
                if let Ok(mut v) = p.lock() {
                    v.push(Probe { took, outcome });
                }
                std::thread::sleep(Duration::from_millis(20).saturating_sub(took));
            }
        });
        Prober {
            stop,
            probes,
            thread: Some(thread),
        }
    }

    /// Stop and return every probe.
    pub fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.probes.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
