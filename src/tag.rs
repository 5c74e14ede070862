//! Short tags that stand for a stream key where the key itself must not
//! appear: the public name of an unregistered key (`guest-1a2b3c4d`) and
//! the key in log lines (`key#1a2b3c4d`).
//!
//! A tag is HMAC-SHA256 of the key under a per-install secret
//! (`tag.secret` in the state directory, 0600, made on first use). An
//! unsalted hash prefix would let anyone who sees a tag test guesses of the
//! key offline, and would be the same on every install.
//!
//! The secret is process-wide: tags appear in log lines written from every
//! thread, and it never changes while the daemon runs. Until [`init`] runs
//! (unit tests, the CLI, which shows no tags) a random per-process secret
//! is used, so tags are never computable without a secret.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::private_fs;

pub(crate) const FILE: &str = "tag.secret";
const SECRET_BYTES: usize = 32;
/// Hex characters of the MAC kept in a tag: enough to tell streamers apart.
const TAG_HEX: usize = 8;

static SECRET: OnceLock<Vec<u8>> = OnceLock::new();

/// Load the install's tag secret from `dir`, creating it on first use.
/// Call once at start, before any tag is made; a second call (or a call
/// after a tag was made) keeps the secret already in use.
pub fn init(dir: &Path) -> Result<(), String> {
    let secret = load_or_create(dir)?;
    let _ = SECRET.set(secret);
    Ok(())
}

fn load_or_create(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join(FILE);
    let shown = path.display();
    for _ in 0..2 {
        match private_fs::read(&path) {
            Ok(bytes) => return parse(&bytes).map_err(|why| format!("{shown}: {why}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        }
        let hex = crate::secret::random_hex(SECRET_BYTES)
            .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        match private_fs::open(&path, private_fs::options().write(true).create_new(true)) {
            Ok(mut f) => {
                f.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write {shown}: {e}"))?;
                private_fs::give_to_dir_owner(&f, &path, dir);
                return parse(hex.as_bytes()).map_err(|why| format!("{shown}: {why}"));
            }
            // Another process made it a moment ago: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {shown}: {e}")),
        }
    }
    Err(format!("{shown} keeps appearing and disappearing"))
}

fn parse(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let hex = text.trim();
    if hex.len() < 32 || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected at least 32 hex digits (remove the file to make a new one)".into());
    }
    Ok(hex.as_bytes().to_vec())
}

fn secret() -> &'static [u8] {
    SECRET.get_or_init(|| {
        crate::secret::random_hex(SECRET_BYTES)
            .unwrap_or_else(|_| format!("{:?}", std::time::SystemTime::now()))
            .into_bytes()
    })
}

/// The tag of `key`: the first hex digits of HMAC-SHA256(secret, key).
pub(crate) fn of(key: &str) -> String {
    hex_mac(secret(), key)[..TAG_HEX].to_string()
}

fn hex_mac(secret: &[u8], msg: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(msg.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex_mac(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tags_are_stable_short_and_not_plain_hashes() {
        let t = of("supersecretkey");
        assert_eq!(t.len(), TAG_HEX);
        assert_eq!(t, of("supersecretkey"));
        assert_ne!(t, of("supersecretkez"));
        // Not the unsalted SHA-256 prefix the tags used to be.
        use sha2::Digest;
        let plain: String = Sha256::digest(b"supersecretkey")[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(t, plain);
    }

    #[test]
    fn secret_file_is_made_once_private_and_reused() {
        let d = ScratchDir::new("tag-secret");
        let a = load_or_create(&d.0).unwrap();
        let p = d.0.join(FILE);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create(&d.0).unwrap(), a);
        // Different installs, different tags.
        let d2 = ScratchDir::new("tag-secret-2");
        let b = load_or_create(&d2.0).unwrap();
        assert_ne!(hex_mac(&a, "k"), hex_mac(&b, "k"));
        std::fs::write(&p, "short\n").unwrap();
        assert!(load_or_create(&d.0).unwrap_err().contains("hex digits"));
    }
}
