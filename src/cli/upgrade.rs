//! `motherstream upgrade`: ask the daemon to hand over (admin API, with the
//! admin token), then wait until `/healthz` answers from the new binary.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use motherstream::auth;
use serde_json::Value;

use super::{local_authority, state_secret};
use crate::Args;

pub fn run(args: &Args) -> ExitCode {
    match upgrade(args) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("motherstream upgrade: {e}");
            ExitCode::from(1)
        }
    }
}

/// The hand-over, asked for and waited for: what to print when it is done.
fn upgrade(args: &Args) -> Result<String, String> {
    // As `api`: the package's postinst runs this as root, in a directory
    // the service user owns.
    let (cfg, _, token) = state_secret(
        args,
        auth::admin_token_path,
        "run this as root or as the motherstream user",
    )?;
    let base = format!("http://{}", local_authority(&cfg.http.listen));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let t0 = Instant::now();
    let accepted = ask(&agent, &base, &token)?;
    let from = accepted["from"].as_str().unwrap_or("?").to_string();
    let pid = accepted["pid"].as_u64().unwrap_or(0);
    let want = accepted["handovers"].as_u64().unwrap_or(0);
    let version = wait_for_new(&agent, &base, want)?;
    Ok(format!(
        "motherstream: handed over from {from} to {version} in {} ms (same pid {pid})",
        t0.elapsed().as_millis()
    ))
}

/// A body as JSON (null when it is none).
fn json(r: ureq::Response) -> Value {
    r.into_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// POST /api/upgrade: the daemon's acceptance (`from`, `pid`, `handovers`).
/// A refusal that says "try again" (a switch in progress) is asked again
/// for up to 15 s; others are final.
fn ask(agent: &ureq::Agent, base: &str, token: &str) -> Result<Value, String> {
    let retry_until = Instant::now() + Duration::from_secs(15);
    loop {
        let asked = agent
            .post(&format!("{base}/api/upgrade"))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            // The daemon waits for open connections before it execs.
            .set("Connection", "close")
            .send_string("{}");
        match asked {
            Ok(r) => return Ok(json(r)),
            Err(ureq::Error::Status(code, r)) => {
                let body = json(r);
                let why = body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string();
                if code == 409 && why.contains("try again") && Instant::now() < retry_until {
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                return Err(format!("refused (HTTP {code}): {why}; nothing changed"));
            }
            Err(e) => return Err(format!("cannot reach the daemon at {base}: {e}")),
        }
    }
}

/// Poll `/healthz` until it counts hand-over `want`: the new binary's
/// version. The socket stays open throughout: each probe waits in the
/// queue while the daemon execs.
fn wait_for_new(agent: &ureq::Agent, base: &str, want: u64) -> Result<String, String> {
    let end = Instant::now() + Duration::from_secs(45);
    let mut last = String::from("no answer");
    while Instant::now() < end {
        match agent
            .get(&format!("{base}/healthz"))
            .set("Connection", "close")
            .call()
        {
            Ok(r) => {
                let h = json(r);
                let n = h["handovers"].as_u64().unwrap_or(0);
                let version = h["version"].as_str().unwrap_or("?");
                if n == want {
                    return Ok(version.to_string());
                }
                if h["fell_back"].as_bool() == Some(true) {
                    return Err(format!(
                        "the new binary ({version}) could not take the state over and restarted instead (see the log); the queue was kept"
                    ));
                }
                last = format!("still {version} (hand-over {n})");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the daemon did not come back from the hand-over within 45 s ({last}); see the log"
    ))
}
