//! How fast wrong admin tokens may be tried: a token bucket per client
//! address and one for everyone. A try takes a token from both; a right
//! token gives it back, so only failures cost. Once a bucket is empty the
//! answer is 429 with `Retry-After` at once, whatever the token (checking
//! it would tell a guesser whether the guess was right): no worker sleeps.
//!
//! Why the operator is not locked out for long: the per-address bucket
//! refills one try every [`CLIENT_REFILL_MS`], so `Retry-After` is a few
//! seconds; and a client whose own bucket is empty is refused before it
//! touches the global one, so one address can take at most its refill rate
//! from everyone's budget (which refills 20 times faster). Only many
//! addresses together can hold the global bucket empty.
//!
//! The rules are pure functions of the time passed in, unit-tested below.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Wrong tokens one address may send at once.
pub(crate) const CLIENT_BURST: u32 = 10;
/// Then one more every this long.
pub(crate) const CLIENT_REFILL_MS: u64 = 2_000;
/// Wrong tokens all addresses together may send at once.
pub(crate) const GLOBAL_BURST: u32 = 100;
/// Then one more every this long (10 a second).
pub(crate) const GLOBAL_REFILL_MS: u64 = 100;
/// Addresses remembered; full buckets are forgotten first. Beyond it, a
/// new address is held to the global bucket alone.
const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tries left, in thousandths (whole tries are 1000).
    milli: u64,
    at_ms: u64,
}

impl Bucket {
    fn full(burst: u32, now_ms: u64) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, burst: u32, refill_ms: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let gained = elapsed.saturating_mul(1000) / refill_ms.max(1);
        self.milli = (self.milli.saturating_add(gained)).min(u64::from(burst) * 1000);
        self.at_ms = now_ms.max(self.at_ms);
    }

    /// Milliseconds until one whole try is back.
    fn wait_ms(&self, refill_ms: u64) -> u64 {
        1000u64.saturating_sub(self.milli) * refill_ms / 1000
    }
}

/// Refused: try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttled {
    pub(crate) retry_after_s: u64,
    /// The global budget, not this address's, ran out.
    pub(crate) global: bool,
}

#[derive(Debug)]
struct Inner {
    clients: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

#[derive(Debug)]
pub struct LoginLimit {
    inner: Mutex<Inner>,
}

impl Default for LoginLimit {
    fn default() -> LoginLimit {
        LoginLimit {
            inner: Mutex::new(Inner {
                clients: HashMap::new(),
                global: Bucket::full(GLOBAL_BURST, 0),
            }),
        }
    }
}

/// The unit one client is counted by: an IPv4 address, or an IPv6 /64
/// (one host usually has a whole /64 to pick addresses from).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

fn secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

impl LoginLimit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is a few integer updates: a panic cannot leave a
        // bucket half-written in a way that matters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one try for `ip` (None: the address is unknown; only the
    /// global budget applies), or say how long to wait.
    pub(crate) fn attempt(&self, ip: Option<IpAddr>, now_ms: u64) -> Result<(), Throttled> {
        let mut g = self.lock();
        let Inner { clients, global } = &mut *g;
        global.refill(GLOBAL_BURST, GLOBAL_REFILL_MS, now_ms);
        let client = ip.map(client_of);
        if let Some(c) = client {
            if !clients.contains_key(&c) && clients.len() >= MAX_CLIENTS {
                clients.retain(|_, b| {
                    b.refill(CLIENT_BURST, CLIENT_REFILL_MS, now_ms);
                    b.milli < u64::from(CLIENT_BURST) * 1000
                });
            }
        }
        let bucket = match client {
            Some(c) if clients.len() < MAX_CLIENTS || clients.contains_key(&c) => Some(
                clients
                    .entry(c)
                    .or_insert_with(|| Bucket::full(CLIENT_BURST, now_ms)),
            ),
            _ => None,
        };
        if let Some(b) = bucket {
            b.refill(CLIENT_BURST, CLIENT_REFILL_MS, now_ms);
            if b.milli < 1000 {
                return Err(Throttled {
                    retry_after_s: secs(b.wait_ms(CLIENT_REFILL_MS)),
                    global: false,
                });
            }
            if global.milli < 1000 {
                return Err(Throttled {
                    retry_after_s: secs(global.wait_ms(GLOBAL_REFILL_MS)),
                    global: true,
                });
            }
            b.milli -= 1000;
        } else if global.milli < 1000 {
            return Err(Throttled {
                retry_after_s: secs(global.wait_ms(GLOBAL_REFILL_MS)),
                global: true,
            });
        }
        global.milli -= 1000;
        Ok(())
    }

    /// The token was right: the try taken by [`attempt`] is given back.
    pub(crate) fn succeeded(&self, ip: Option<IpAddr>) {
        let mut g = self.lock();
        let Inner { clients, global } = &mut *g;
        global.milli = (global.milli + 1000).min(u64::from(GLOBAL_BURST) * 1000);
        if let Some(b) = ip.map(client_of).and_then(|c| clients.get_mut(&c)) {
            b.milli = (b.milli + 1000).min(u64::from(CLIENT_BURST) * 1000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_address_gets_its_burst_then_waits_seconds_not_minutes() {
        let l = LoginLimit::default();
        for i in 0..CLIENT_BURST {
            assert_eq!(l.attempt(ip("10.0.0.1"), 1000), Ok(()), "try {i}");
        }
        let t = l.attempt(ip("10.0.0.1"), 1000).unwrap_err();
        assert!(!t.global);
        assert_eq!(t.retry_after_s, CLIENT_REFILL_MS / 1000);
        // Another address is not affected.
        assert_eq!(l.attempt(ip("10.0.0.2"), 1000), Ok(()));
        // One refill later, one more try.
        assert_eq!(l.attempt(ip("10.0.0.1"), 1000 + CLIENT_REFILL_MS), Ok(()));
        assert!(l.attempt(ip("10.0.0.1"), 1000 + CLIENT_REFILL_MS).is_err());
    }

    #[test]
    fn right_tokens_cost_nothing() {
        let l = LoginLimit::default();
        for _ in 0..10 * CLIENT_BURST {
            assert_eq!(l.attempt(ip("10.0.0.1"), 5), Ok(()));
            l.succeeded(ip("10.0.0.1"));
        }
    }

    #[test]
    fn one_address_cannot_drain_the_global_budget() {
        let l = LoginLimit::default();
        // One address hammering for a minute: refused by its own bucket,
        // so everyone else's budget stays nearly full.
        let mut t = 0;
        while t < 60_000 {
            let _ = l.attempt(ip("10.0.0.1"), t);
            t += 10;
        }
        for i in 0..GLOBAL_BURST / 2 {
            let other = format!("10.1.{}.{}", i / 200, i % 200);
            assert_eq!(l.attempt(ip(&other), t), Ok(()), "{other}");
        }
    }

    #[test]
    fn many_addresses_meet_the_global_budget_and_its_wait_is_short() {
        let l = LoginLimit::default();
        let mut refused = None;
        for i in 0..GLOBAL_BURST + 1 {
            let a = format!("10.2.{}.{}", i / 200, i % 200);
            if let Err(t) = l.attempt(ip(&a), 0) {
                refused = Some((i, t));
                break;
            }
        }
        let (i, t) = refused.expect("the global budget ends");
        assert_eq!(i, GLOBAL_BURST);
        assert!(t.global && t.retry_after_s == 1, "{t:?}");
        assert_eq!(l.attempt(ip("10.3.0.1"), GLOBAL_REFILL_MS), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let l = LoginLimit::default();
        for i in 0..CLIENT_BURST {
            let a = format!("2001:db8::{:x}", i + 1);
            assert_eq!(l.attempt(ip(&a), 0), Ok(()));
        }
        assert!(l.attempt(ip("2001:db8::ffff:1"), 0).is_err());
        assert_eq!(l.attempt(ip("2001:db8:0:1::1"), 0), Ok(()));
        for _ in 0..CLIENT_BURST {
            assert_eq!(l.attempt(ip("192.0.2.1"), 0), Ok(()));
        }
        assert!(l.attempt(ip("::ffff:192.0.2.1"), 0).is_err());
    }

    #[test]
    fn the_address_map_is_bounded() {
        let l = LoginLimit::default();
        for i in 0..(MAX_CLIENTS as u64 + 50) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
            // Spread over time so the global budget never ends.
            let _ = l.attempt(Some(a), i * GLOBAL_REFILL_MS);
        }
        assert!(l.lock().clients.len() <= MAX_CLIENTS);
    }
}
