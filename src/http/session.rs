//! Console sessions: logging in with the admin token gives the browser an
//! `HttpOnly; SameSite=Strict` cookie holding a random session id, and the
//! page (in the login answer only, never again) a CSRF token that every
//! admin call from the console carries in `X-CSRF-Token`. Neither works
//! alone: a cookie reaches every server on the same host name, whatever
//! its port. The store lives in memory (a restart logs everyone out,
//! which is fine for a handful of moderators) behind a mutex: it is not
//! queue state, and every operation on it is a hash lookup.
//!
//! The rules (expiry, the cap, which check fails) are pure functions of the
//! time passed in, unit-tested below; [`Sessions::login`] adds the random ids.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::secret::ct_eq;

/// The cookie's name.
pub(crate) const COOKIE: &str = "ms_session";
/// Header the CSRF token travels in.
pub(crate) const CSRF_HEADER: &str = "X-CSRF-Token";
/// A session unused for this long is gone.
pub(crate) const IDLE_MS: u64 = 12 * 3600 * 1000;
/// And however busy, a session ends this long after the login.
pub(crate) const MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;
/// Sessions kept at most; a new login beyond this ends the least recently
/// used one (only token holders can log in, but memory stays bounded).
pub(crate) const MAX_SESSIONS: usize = 64;
/// Random bytes in a session id and in a CSRF token.
const ID_BYTES: usize = 32;

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    created_ms: u64,
    last_ms: u64,
}

impl Session {
    fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_ms) < IDLE_MS
            && now_ms.saturating_sub(self.created_ms) < MAX_AGE_MS
    }
}

/// What checking a request's session found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// A live session and its CSRF token.
    Valid,
    /// No cookie, an unknown id, or an expired session.
    NoSession,
    /// A live session, but `X-CSRF-Token` is missing or wrong.
    BadCsrf,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding it cannot leave a half-made session: every
        // change is one insert or remove.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session with random id and CSRF token: `(id, csrf)`.
    pub(crate) fn login(&self, now_ms: u64) -> std::io::Result<(String, String)> {
        let id = crate::secret::random_hex(ID_BYTES)?;
        let csrf = crate::secret::random_hex(ID_BYTES)?;
        self.insert(id.clone(), csrf.clone(), now_ms);
        Ok((id, csrf))
    }

    /// Store a session (expired ones are dropped first; at the cap, the
    /// least recently used goes).
    fn insert(&self, id: String, csrf: String, now_ms: u64) {
        let mut m = self.lock();
        m.retain(|_, s| s.alive(now_ms));
        while m.len() >= MAX_SESSIONS {
            let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(
            id,
            Session {
                csrf,
                created_ms: now_ms,
                last_ms: now_ms,
            },
        );
    }

    /// Check a request's session id and CSRF token; a valid use keeps the
    /// session alive for another [`IDLE_MS`].
    pub(crate) fn check(&self, id: Option<&str>, csrf: Option<&str>, now_ms: u64) -> Check {
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return Check::NoSession;
        };
        let mut m = self.lock();
        let Some(s) = m.get_mut(id) else {
            return Check::NoSession;
        };
        if !s.alive(now_ms) {
            m.remove(id);
            return Check::NoSession;
        }
        let given = csrf.map(str::trim).unwrap_or("");
        if given.is_empty() || !ct_eq(given.as_bytes(), s.csrf.as_bytes()) {
            return Check::BadCsrf;
        }
        s.last_ms = now_ms;
        Check::Valid
    }

    /// Log out: the id is forgotten at once.
    pub(crate) fn logout(&self, id: Option<&str>) -> bool {
        id.is_some_and(|i| self.lock().remove(i).is_some())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// `Set-Cookie` for a new session. `Secure` when the browser reached us
/// over HTTPS (a TLS proxy says so); on plain loopback HTTP a `Secure`
/// cookie would never be sent back.
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        MAX_AGE_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that deletes the session cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_check_and_logout() {
        let s = Sessions::default();
        let (id, csrf) = s.login(1000).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(s.check(Some(&id), Some(&csrf), 2000), Check::Valid);
        assert_eq!(s.check(Some(&id), None, 2000), Check::BadCsrf);
        assert_eq!(s.check(Some(&id), Some(""), 2000), Check::BadCsrf);
        assert_eq!(s.check(Some(&id), Some(&id), 2000), Check::BadCsrf);
        assert_eq!(s.check(Some(&csrf), Some(&csrf), 2000), Check::NoSession);
        assert_eq!(s.check(None, Some(&csrf), 2000), Check::NoSession);
        assert_eq!(s.check(Some(""), Some(&csrf), 2000), Check::NoSession);
        assert!(s.logout(Some(&id)));
        assert!(!s.logout(Some(&id)));
        assert_eq!(s.check(Some(&id), Some(&csrf), 4000), Check::NoSession);
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let s = Sessions::default();
        s.insert("a".into(), "x".into(), 0);
        // Used just before the idle limit: kept alive.
        assert_eq!(s.check(Some("a"), Some("x"), IDLE_MS - 1), Check::Valid);
        assert_eq!(s.check(Some("a"), Some("x"), 2 * IDLE_MS - 2), Check::Valid);
        // Idle for the whole limit: gone, and removed from the store.
        assert_eq!(
            s.check(Some("a"), Some("x"), 3 * IDLE_MS - 1),
            Check::NoSession
        );
        assert!(s.is_empty());
        // Busy all the time, still over at the maximum age.
        s.insert("b".into(), "y".into(), 0);
        let mut t = 0;
        while t + IDLE_MS / 2 < MAX_AGE_MS {
            t += IDLE_MS / 2;
            assert_eq!(s.check(Some("b"), Some("y"), t), Check::Valid, "{t}");
        }
        assert_eq!(s.check(Some("b"), Some("y"), MAX_AGE_MS), Check::NoSession);
    }

    #[test]
    fn the_store_is_capped_and_drops_the_least_recently_used() {
        let s = Sessions::default();
        for i in 0..MAX_SESSIONS as u64 {
            s.insert(format!("s{i}"), "c".into(), 10 + i);
        }
        // s0 is used, so s1 is now the least recently used.
        assert_eq!(s.check(Some("s0"), Some("c"), 1000), Check::Valid);
        s.insert("new".into(), "c".into(), 1001);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.check(Some("s1"), Some("c"), 1002), Check::NoSession);
        assert_eq!(s.check(Some("s0"), Some("c"), 1002), Check::Valid);
        assert_eq!(s.check(Some("new"), Some("c"), 1002), Check::Valid);
    }

    #[test]
    fn cookies_are_parsed_and_written_strictly() {
        let h = Some("a=1; ms_session=abc ; other=\"q\"");
        assert_eq!(cookie(h, COOKIE), Some("abc"));
        assert_eq!(cookie(h, "other"), Some("q"));
        assert_eq!(cookie(h, "ms"), None);
        assert_eq!(cookie(Some("ms_sessionx=1"), COOKIE), None);
        assert_eq!(cookie(Some("garbage"), COOKIE), None);
        assert_eq!(cookie(None, COOKIE), None);
        let c = set_cookie("abc", false);
        for part in ["ms_session=abc", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.split("; ").any(|p| p == part), "{part} in {c}");
        }
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
