//! Who may call what: the `Host` / `Origin` / `Sec-Fetch-Site` checks that
//! stop DNS rebinding and cross-site requests from a browser on this host,
//! and the two secrets (admin token, hook secret) that live in files in the
//! state directory, created on first start when none is configured.
//!
//! The checks are pure functions of header values, unit-tested below.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Admin token file in the state directory when `[http] admin_token_file`
/// is empty.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Hook secret file in the state directory when `[http] hook_secret_file`
/// is empty.
pub(crate) const HOOK_SECRET_FILE: &str = "hook.secret";
/// Hook URLs are `/hook/<secret>/<hook name>`.
pub const HOOK_PREFIX: &str = "/hook/";

/// The admin token file in effect for `cfg` with state directory `dir`.
pub fn admin_token_path(cfg: &Config, dir: &Path) -> PathBuf {
    if cfg.http.admin_token_file.is_empty() {
        dir.join(ADMIN_TOKEN_FILE)
    } else {
        PathBuf::from(&cfg.http.admin_token_file)
    }
}

/// The hook secret file in effect for `cfg` with state directory `dir`.
pub fn hook_secret_path(cfg: &Config, dir: &Path) -> PathBuf {
    if cfg.http.hook_secret_file.is_empty() {
        dir.join(HOOK_SECRET_FILE)
    } else {
        PathBuf::from(&cfg.http.hook_secret_file)
    }
}

/// The shortest admin token accepted: it guards every stream key.
pub(crate) const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Refuse an admin token an attacker could guess.
pub fn check_admin_token(token: &str, path: &Path) -> Result<(), String> {
    let n = token.chars().count();
    if n < MIN_ADMIN_TOKEN_CHARS {
        return Err(format!(
            "the admin token in {} is {n} characters long; it must be at least \
             {MIN_ADMIN_TOKEN_CHARS} (make one with: openssl rand -hex 32)",
            path.display()
        ));
    }
    Ok(())
}

/// [`load_or_create`] for the admin token, refusing a short one.
pub fn load_admin_token(path: &Path, create: bool) -> Result<(String, bool), String> {
    let (token, created) = load_or_create(path, create)?;
    check_admin_token(&token, path)?;
    Ok((token, created))
}

/// Read the secret on the first line of `path`. When the file does not
/// exist and `create` is set, write a new random one (0600, never replacing
/// a file that appears meanwhile). The bool says whether it was created.
pub fn load_or_create(path: &Path, create: bool) -> Result<(String, bool), String> {
    match read_first_line(path) {
        Ok(s) => {
            if let Some(w) = crate::private_fs::readable_by_others(path) {
                log::warn!("{w}");
            }
            return Ok((s, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let secret = crate::secret::random_hex(32)
        .map_err(|e| format!("cannot read /dev/urandom for {}: {e}", path.display()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(format!("{secret}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok((secret, true))
        }
        // Someone (the postinst, another start) won the race: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_first_line(path)
            .map(|s| (s, false))
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// The secret on the first line; a symbolic link is refused (the state
/// directory belongs to the service user, and root's CLI reads it too).
fn read_first_line(path: &Path) -> std::io::Result<String> {
    let bytes = crate::private_fs::read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not text")
    })?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(line)
}

/// The host part of a `Host` header (or of an Origin's authority): port
/// and IPv6 brackets removed, lower-cased, one trailing dot dropped.
fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        h
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if valid_port(p) => h,
            Some(_) => return None,
            None => a,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let name_ok = |h: &str| {
        h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if host.is_empty() || !(name_ok(host) || host.parse::<IpAddr>().is_ok()) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a request's `Host` header names this server in a way a DNS
/// rebinding page cannot produce.
///
/// Accepted: `localhost`, any IP literal (a browser sends an IP as Host
/// only when it connected to that very IP, so no foreign DNS name is
/// behind it), and the names in `[http] allowed_hosts` (for a reverse
/// proxy). Refused: every other name, and a missing or malformed header.
pub(crate) fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(name) = host.and_then(host_name) else {
        return false;
    };
    name == "localhost"
        || name.parse::<IpAddr>().is_ok()
        || allowed.iter().any(|a| {
            let a = a.trim().trim_end_matches('.');
            a.eq_ignore_ascii_case(&name)
        })
}

/// Why a request that could change something was refused as cross-site.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CrossSite {
    /// `Sec-Fetch-Site` is `cross-site` or `same-site` (another origin on
    /// this host, e.g. a page on localhost:3000).
    FetchSite(String),
    /// `Origin` is `null` or names another origin than the `Host`.
    Origin(String),
}

/// Refuse requests a browser sends on behalf of another origin. Requests
/// without these headers (curl, nginx, the CLI) pass: they are not sent by
/// a page, and the admin token guards them.
pub(crate) fn same_origin(
    host: Option<&str>,
    origin: Option<&str>,
    fetch_site: Option<&str>,
) -> Result<(), CrossSite> {
    if let Some(site) = fetch_site.map(str::trim) {
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(CrossSite::FetchSite(site.to_string()));
        }
    }
    let Some(origin) = origin.map(str::trim) else {
        return Ok(());
    };
    let refused = || Err(CrossSite::Origin(origin.to_string()));
    let Some((scheme, authority)) = origin.split_once("://") else {
        return refused();
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return refused(),
    };
    let (Some(o), Some(h)) = (
        normalize_authority(authority, default_port),
        host.and_then(|h| normalize_authority(h, default_port)),
    ) else {
        return refused();
    };
    if o == h {
        Ok(())
    } else {
        refused()
    }
}

/// `host:port` lower-cased with the scheme's default port filled in.
fn normalize_authority(a: &str, default_port: &str) -> Option<String> {
    let a = a.trim();
    if a.contains(['/', '?', '#', '@']) {
        return None;
    }
    let name = host_name(a)?;
    let port = match a.rsplit_once(':') {
        Some((h, p)) if valid_port(p) && (!h.contains(':') || h.ends_with(']')) => p,
        _ => default_port,
    };
    Some(format!("{name}:{port}"))
}

/// Whether an admin request body is declared as JSON
/// (`application/json`, parameters such as `charset` allowed).
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ip_literals_and_configured_hosts_pass() {
        let none: &[String] = &[];
        for h in [
            "localhost",
            "localhost:8483",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:8483",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8483",
            "192.0.2.7:8483",
            "[2001:db8::1]:80",
        ] {
            assert!(host_allowed(Some(h), none), "{h}");
        }
        let cfg = vec!["stream.example.org".to_string()];
        assert!(host_allowed(Some("Stream.Example.org:443"), &cfg));
        assert!(host_allowed(Some("stream.example.org."), &cfg));
    }

    #[test]
    fn rebinding_names_and_junk_are_refused() {
        let cfg = vec!["stream.example.org".to_string()];
        for h in [
            None,
            Some(""),
            Some("rebind.evil.example"),
            Some("rebind.evil.example:8483"),
            Some("evil.localhost"),
            Some("localhost.evil.example"),
            Some("127.0.0.1.evil.example"),
            Some("example.org"),
            Some("stream.example.org.evil"),
            Some("localhost:http"),
            Some("localhost:8483:1"),
            Some("[::1"),
            Some("[::1]x"),
            Some("user@localhost"),
            Some("localhost/x"),
        ] {
            assert!(!host_allowed(h, &cfg), "{h:?}");
        }
    }

    #[test]
    fn origin_must_be_the_host() {
        let h = Some("127.0.0.1:8483");
        assert_eq!(same_origin(h, None, None), Ok(()));
        assert_eq!(same_origin(h, Some("http://127.0.0.1:8483"), None), Ok(()));
        assert_eq!(
            same_origin(Some("localhost"), Some("http://LOCALHOST:80"), None),
            Ok(())
        );
        assert_eq!(
            same_origin(Some("admin.example"), Some("https://admin.example"), None),
            Ok(())
        );
        assert_eq!(
            same_origin(Some("[::1]:8483"), Some("http://[::1]:8483"), None),
            Ok(())
        );
        for o in [
            "http://evil.example",
            "http://127.0.0.1:3000",
            "http://localhost:8483",
            "null",
            "file://",
            "http://127.0.0.1:8483/x",
            "ftp://127.0.0.1:8483",
            "",
        ] {
            assert!(
                matches!(same_origin(h, Some(o), None), Err(CrossSite::Origin(_))),
                "{o}"
            );
        }
        assert!(same_origin(None, Some("http://127.0.0.1:8483"), None).is_err());
    }

    #[test]
    fn fetch_metadata_cross_and_same_site_are_refused() {
        let h = Some("127.0.0.1:8483");
        assert_eq!(same_origin(h, None, Some("same-origin")), Ok(()));
        assert_eq!(same_origin(h, None, Some("none")), Ok(()));
        for s in ["cross-site", "same-site", "Cross-Site", "bogus"] {
            assert!(
                matches!(same_origin(h, None, Some(s)), Err(CrossSite::FetchSite(_))),
                "{s}"
            );
        }
        // Fetch metadata wins even when Origin looks right.
        assert!(same_origin(h, Some("http://127.0.0.1:8483"), Some("cross-site")).is_err());
    }

    #[test]
    fn json_content_type() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        for c in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("text/plain; application/json"),
        ] {
            assert!(!is_json(c), "{c:?}");
        }
    }

    #[test]
    fn admin_tokens_need_32_characters() {
        let p = Path::new("/etc/motherstream/admin.token");
        let e = check_admin_token("a", p).unwrap_err();
        assert!(
            e.contains("1 characters") && e.contains("at least 32"),
            "{e}"
        );
        assert!(e.contains("/etc/motherstream/admin.token"), "{e}");
        assert!(check_admin_token(&"x".repeat(31), p).is_err());
        assert!(check_admin_token(&"x".repeat(32), p).is_ok());
        // Characters, not bytes: 16 two-byte letters are still 16.
        assert!(check_admin_token(&"é".repeat(16), p).is_err());
    }

    #[test]
    fn a_linked_secret_is_refused() {
        let d = crate::scratch::ScratchDir::new("authlink");
        let real = d.0.join("elsewhere");
        std::fs::write(&real, "a-secret-that-is-long-enough-0123456789\n").unwrap();
        let link = d.0.join("admin.token");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = load_admin_token(&link, true).unwrap_err();
        assert!(
            e.contains("symbolic link") && e.contains("admin.token"),
            "{e}"
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn secret_files_are_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = crate::scratch::ScratchDir::new("authsecret");
        let p = d.0.join("admin.token");
        assert!(load_or_create(&p, false).is_err(), "missing, not created");
        let (a, created) = load_or_create(&p, true).unwrap();
        assert!(created);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&p, true).unwrap(), (a, false));
        std::fs::write(&p, "\n").unwrap();
        assert!(
            load_or_create(&p, true).is_err(),
            "an empty file is an error"
        );
    }
}
