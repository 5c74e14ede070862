//! The streamer registry: display name ↔ stream key (+ an optional slot
//! length per streamer), kept in one file, `streamers.json`, in the state
//! directory (mode 0600, atomic writes).
//!
//! The rules (validation, lookups, what the public sees instead of a key)
//! are pure; the file functions take the directory, so tests and the CLI
//! point them anywhere. The CLI and the daemon both change the file through
//! [`update`], which holds an exclusive lock across read-modify-write.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::key::StreamKey;
use crate::private_fs;
use crate::refusal::{Refusal, Why};
use crate::secret::ct_eq;

pub const FILE: &str = "streamers.json";
const LOCK_FILE: &str = "streamers.lock";
const VERSION: u32 = 1;
/// Bytes of randomness in a generated stream key (hex: twice as many chars).
pub(crate) const KEY_BYTES: usize = 16;
/// Prefix of the public name of an unregistered key once a registry is in use.
pub(crate) const GUEST_PREFIX: &str = "guest-";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Streamer {
    pub(crate) name: String,
    #[serde(with = "crate::key::persist")]
    pub(crate) key: StreamKey,
    /// Slot length for this streamer (0 = unlimited); None = the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slot_seconds: Option<u64>,
    /// When the streamer was added (or the key last rotated), unix ms.
    #[serde(default)]
    pub(crate) key_set_at: u64,
    /// Token of the streamer's own page, `/me/<token>`: not the stream key,
    /// so a page link that leaks (browser history, a proxy's access log)
    /// cannot publish. Empty in files written before pages existed: no page
    /// until a link is made (`streamer link NAME`, the console).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) link_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Registry {
    streamers: Vec<Streamer>,
    /// The file exists (even empty): keys are then never shown in public.
    present: bool,
    /// key → index in `streamers`, for the public name of keys that are
    /// already queued (admission goes through the constant-time `by_key`).
    index: HashMap<StreamKey, usize>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    streamers: Vec<Streamer>,
}

#[derive(Debug)]
pub(crate) enum RegistryError {
    NotFound(String),
    Exists(String),
    Invalid(String),
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    Corrupt {
        path: PathBuf,
        why: String,
    },
}

impl RegistryError {
    /// What kind of refusal this is for whoever asked.
    pub(crate) fn why(&self) -> Why {
        match self {
            RegistryError::NotFound(_) => Why::NotFound,
            RegistryError::Exists(_) => Why::Conflict,
            RegistryError::Invalid(_) => Why::Invalid,
            RegistryError::Io { .. } | RegistryError::Corrupt { .. } => Why::Internal,
        }
    }
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Refusal {
        Refusal::new(e.why(), e.to_string())
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NotFound(n) => write!(f, "no streamer named {n:?}"),
            RegistryError::Exists(n) => write!(f, "a streamer named {n:?} already exists"),
            RegistryError::Invalid(m) => f.write_str(m),
            RegistryError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            RegistryError::Corrupt { path, why } => {
                write!(
                    f,
                    "streamer registry {} is unreadable: {why}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for RegistryError {}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Invisible characters that change how text around them is shown: bidi
/// embeddings, overrides and isolates (U+202A–202E, U+2066–2069, which can
/// make "evil" display as "live" in an overlay), zero-width characters,
/// line/paragraph separators and the other Unicode format (Cf) characters.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891
        | 0x08E2 | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064
        | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD
        | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F)
}

/// A display name: 1–64 characters, no control or invisible formatting
/// characters, no surrounding spaces, not starting with the guest prefix
/// (reserved for unregistered keys).
pub(crate) fn validate_name(name: &str) -> Result<(), RegistryError> {
    let n = name.chars().count();
    if n == 0 || n > 64 {
        return Err(RegistryError::Invalid(format!(
            "a streamer name must be 1 to 64 characters, not {n}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(RegistryError::Invalid(
            "a streamer name must not contain control characters".into(),
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_format_char(c)) {
        return Err(RegistryError::Invalid(format!(
            "a streamer name must not contain invisible formatting characters \
             (found U+{:04X}: bidi controls and zero-width characters can disguise a name)",
            c as u32
        )));
    }
    if name.trim() != name {
        return Err(RegistryError::Invalid(
            "a streamer name must not start or end with spaces".into(),
        ));
    }
    if name.to_lowercase().starts_with(GUEST_PREFIX) {
        return Err(RegistryError::Invalid(format!(
            "names starting with {GUEST_PREFIX:?} are reserved for unregistered streamers"
        )));
    }
    Ok(())
}

pub(crate) fn validate_slot(slot_seconds: Option<u64>) -> Result<(), RegistryError> {
    match slot_seconds {
        Some(s) if s > 7 * 24 * 3600 => Err(RegistryError::Invalid(format!(
            "slot_seconds {s} is more than a week"
        ))),
        _ => Ok(()),
    }
}

impl Registry {
    /// An in-memory registry (tests; `present` = a file exists).
    pub(crate) fn from_streamers(streamers: Vec<Streamer>, present: bool) -> Registry {
        let mut r = Registry {
            streamers,
            present,
            index: HashMap::new(),
        };
        r.reindex();
        r
    }

    fn reindex(&mut self) {
        self.index = self
            .streamers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.clone(), i))
            .collect();
    }

    /// The streamer of a key that is already in the queue or block list
    /// (not secret any more: it was admitted), by hash lookup.
    fn known(&self, key: &StreamKey) -> Option<&Streamer> {
        self.index.get(key).and_then(|&i| self.streamers.get(i))
    }

    pub(crate) fn streamers(&self) -> &[Streamer] {
        &self.streamers
    }

    /// Whether a registry is in use: from then on keys are never public.
    pub(crate) fn in_use(&self) -> bool {
        self.present || !self.streamers.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.streamers.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.streamers.is_empty()
    }

    /// The streamer whose key this is. Every key is compared, in constant
    /// time, whatever matches: the answer time says nothing about the keys.
    pub(crate) fn by_key(&self, key: &StreamKey) -> Option<&Streamer> {
        let mut found = None;
        for s in &self.streamers {
            if s.key.ct_eq(key) && found.is_none() {
                found = Some(s);
            }
        }
        found
    }

    /// Names are unique regardless of case.
    pub(crate) fn by_name(&self, name: &str) -> Option<&Streamer> {
        let lower = name.to_lowercase();
        self.streamers
            .iter()
            .find(|s| s.name.to_lowercase() == lower)
    }

    /// The public name of a key: the registered name, else `guest-` and
    /// the key's tag, registry or not. A key is never a public name: anyone
    /// who read it off an overlay could go on air as that streamer.
    pub(crate) fn display(&self, key: &StreamKey) -> String {
        match self.known(key) {
            Some(s) => s.name.clone(),
            None => format!("{GUEST_PREFIX}{}", key.tag()),
        }
    }

    /// This streamer's own slot length, if it has one.
    pub(crate) fn slot_seconds(&self, key: &StreamKey) -> Option<u64> {
        self.known(key).and_then(|s| s.slot_seconds)
    }

    pub(crate) fn add(
        &mut self,
        name: &str,
        slot_seconds: Option<u64>,
        key: StreamKey,
        now_ms: u64,
    ) -> Result<&Streamer, RegistryError> {
        validate_name(name)?;
        validate_slot(slot_seconds)?;
        if self.by_name(name).is_some() {
            return Err(RegistryError::Exists(name.to_string()));
        }
        self.check_new_name(name)?;
        self.check_new_key(&key)?;
        self.streamers.push(Streamer {
            name: name.to_string(),
            key,
            slot_seconds,
            key_set_at: now_ms,
            link_token: String::new(),
        });
        self.present = true;
        self.reindex();
        Ok(&self.streamers[self.streamers.len() - 1])
    }

    /// The rules only new names follow (see [`crate::names`]): visible,
    /// and not a look-alike of a registered name or of the guest names.
    fn check_new_name(&self, name: &str) -> Result<(), RegistryError> {
        if let Some(why) = crate::names::invisible_part(name) {
            return Err(RegistryError::Invalid(why));
        }
        if crate::names::skeleton(name).starts_with(&crate::names::skeleton(GUEST_PREFIX)) {
            return Err(RegistryError::Invalid(format!(
                "{name:?} looks like {GUEST_PREFIX:?}, which is reserved for unregistered streamers"
            )));
        }
        if let Some(s) = self
            .streamers
            .iter()
            .find(|s| crate::names::confusable(&s.name, name))
        {
            return Err(RegistryError::Invalid(format!(
                "{name:?} looks like the streamer name {:?} (letters from other scripts or \
                 look-alike characters); choose a name that reads differently",
                s.name
            )));
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, name: &str) -> Result<Streamer, RegistryError> {
        let i = self.index(name)?;
        let s = self.streamers.remove(i);
        self.reindex();
        Ok(s)
    }

    /// Give a streamer a new key; returns the old one (to kick its publisher).
    pub(crate) fn rotate_key(
        &mut self,
        name: &str,
        key: StreamKey,
        now_ms: u64,
    ) -> Result<StreamKey, RegistryError> {
        self.check_new_key(&key)?;
        let i = self.index(name)?;
        let s = &mut self.streamers[i];
        s.key_set_at = now_ms;
        let old = std::mem::replace(&mut s.key, key);
        self.reindex();
        Ok(old)
    }

    pub(crate) fn set_slot(
        &mut self,
        name: &str,
        slot_seconds: Option<u64>,
    ) -> Result<(), RegistryError> {
        validate_slot(slot_seconds)?;
        let i = self.index(name)?;
        self.streamers[i].slot_seconds = slot_seconds;
        Ok(())
    }

    /// Give a streamer a new page token (the old link stops working);
    /// returns the streamer's name as registered.
    pub(crate) fn set_link(&mut self, name: &str, token: String) -> Result<String, RegistryError> {
        if !crate::hook::valid_name(&token) {
            return Err(RegistryError::Invalid(
                "a page token must match [A-Za-z0-9_-]{1,64}".into(),
            ));
        }
        if self.by_link(&token).is_some() {
            return Err(RegistryError::Invalid(
                "that page token is already in use".into(),
            ));
        }
        let i = self.index(name)?;
        self.streamers[i].link_token = token;
        Ok(self.streamers[i].name.clone())
    }

    /// A streamer's page link: (registered name, token). The existing one,
    /// or a new one when there is none yet or `rotate` asks for it. The
    /// one rule the console and the CLI share.
    pub(crate) fn link(
        &mut self,
        name: &str,
        rotate: bool,
    ) -> Result<(String, String), RegistryError> {
        if let Some(s) = self.by_name(name) {
            if !rotate && !s.link_token.is_empty() {
                return Ok((s.name.clone(), s.link_token.clone()));
            }
        }
        let t = random_token()?;
        Ok((self.set_link(name, t.clone())?, t))
    }

    /// The streamer whose page token this is, compared in constant time
    /// against every token (as [`Registry::by_key`]). An empty token (no
    /// link made yet) never matches.
    pub(crate) fn by_link(&self, token: &str) -> Option<&Streamer> {
        let mut found = None;
        for s in &self.streamers {
            let hit = !s.link_token.is_empty() && ct_eq(s.link_token.as_bytes(), token.as_bytes());
            if hit && found.is_none() {
                found = Some(s);
            }
        }
        found
    }

    fn index(&self, name: &str) -> Result<usize, RegistryError> {
        let lower = name.to_lowercase();
        self.streamers
            .iter()
            .position(|s| s.name.to_lowercase() == lower)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    fn check_new_key(&self, key: &StreamKey) -> Result<(), RegistryError> {
        if self.by_key(key).is_some() {
            return Err(RegistryError::Invalid("that key is already in use".into()));
        }
        Ok(())
    }

    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_vec_pretty(&FileFormat {
            version: VERSION,
            streamers: self.streamers.clone(),
        })?;
        v.push(b'\n');
        Ok(v)
    }

    fn from_json(bytes: &[u8]) -> Result<Registry, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(1) => {}
            Some(n) => return Err(format!("unsupported version {n}")),
            None => return Err("no version field".into()),
        }
        // Say whose key is invalid (reading the key checks it too, but
        // serde's message would not name the streamer).
        for s in v
            .get("streamers")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(Err(e)) = s.get("key").and_then(|k| k.as_str()).map(StreamKey::parse) {
                let name = s.get("name").and_then(|n| n.as_str()).unwrap_or("");
                return Err(format!("the key of {name:?}: {e}"));
            }
        }
        let f: FileFormat = serde_json::from_value(v).map_err(|e| e.to_string())?;
        // A hand-edited file must still hold unique, valid names and keys:
        // a duplicate key would make "who is this" ambiguous.
        let mut reg = Registry {
            streamers: Vec::with_capacity(f.streamers.len()),
            present: true,
            index: HashMap::new(),
        };
        for s in f.streamers {
            validate_name(&s.name).map_err(|e| format!("{:?}: {e}", s.name))?;
            if reg.by_name(&s.name).is_some() {
                return Err(format!("the name {:?} is listed twice", s.name));
            }
            reg.check_new_key(&s.key)
                .map_err(|e| format!("the key of {:?}: {e}", s.name))?;
            if !s.link_token.is_empty() && reg.by_link(&s.link_token).is_some() {
                return Err(format!("the page token of {:?} is listed twice", s.name));
            }
            reg.streamers.push(s);
        }
        reg.reindex();
        Ok(reg)
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Read the registry in `dir`. No file = an empty registry not in use.
pub(crate) fn load(dir: &Path) -> Result<Registry, RegistryError> {
    let p = path(dir);
    match private_fs::read(&p) {
        Ok(bytes) => {
            Registry::from_json(&bytes).map_err(|why| RegistryError::Corrupt { path: p, why })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(e) => Err(io_err(&p, "read")(e)),
    }
}

/// Write the registry atomically (temp file 0600, fsync, rename, fsync dir).
/// When run as root (the CLI), the file is given to the owner of `dir`, so
/// the daemon's user can read what an administrator wrote.
pub(crate) fn save(dir: &Path, reg: &Registry) -> Result<(), RegistryError> {
    let p = path(dir);
    let bytes = reg
        .to_json()
        .map_err(|e| io_err(&p, "encode")(io::Error::other(e)))?;
    crate::store::write_atomic_private(&p, &bytes).map_err(|e| RegistryError::Io {
        path: e.path,
        action: e.action,
        source: e.source,
    })
}

/// Read-modify-write under an exclusive lock (`streamers.lock`), so the CLI
/// and the daemon never lose each other's changes.
pub(crate) fn update<T>(
    dir: &Path,
    f: impl FnOnce(&mut Registry) -> Result<T, RegistryError>,
) -> Result<(T, Registry), RegistryError> {
    private_fs::create_dir(dir).map_err(io_err(dir, "create state directory"))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = private_fs::open(
        &lock_path,
        private_fs::options()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .map_err(io_err(&lock_path, "open"))?;
    private_fs::give_to_dir_owner(&lock, &lock_path, dir);
    crate::sys::lock_exclusive(&lock).map_err(io_err(&lock_path, "lock"))?;
    let mut reg = load(dir)?;
    let out = f(&mut reg)?;
    reg.present = true;
    save(dir, &reg)?;
    drop(lock);
    Ok((out, reg))
}

/// What identifies a version of the file, cheaply (one stat): a changed
/// signature means "read it again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSig {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// The file's signature; None when it does not exist (or cannot be stat'ed).
pub(crate) fn signature(dir: &Path) -> Option<FileSig> {
    let m = fs::metadata(path(dir)).ok()?;
    Some(FileSig {
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// A new random stream key.
pub(crate) fn new_key() -> Result<StreamKey, RegistryError> {
    StreamKey::parse(&random_token()?).map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Random hex (a key's text, a page token).
fn random_token() -> Result<String, RegistryError> {
    crate::secret::random_hex(KEY_BYTES).map_err(io_err(Path::new("/dev/urandom"), "read"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::k;

    fn reg() -> Registry {
        let mut r = Registry::default();
        r.add("DJ Alice", None, k(&"a".repeat(32)), 1).unwrap();
        r.add("bob", Some(600), k(&"b".repeat(32)), 2).unwrap();
        r
    }

    use crate::scratch::ScratchDir as TempDir;

    #[test]
    fn lookups_by_key_and_name() {
        let r = reg();
        assert_eq!(r.by_key(&k(&"a".repeat(32))).unwrap().name, "DJ Alice");
        assert!(r.by_key(&k(&"a".repeat(31))).is_none());
        assert_eq!(r.by_name("dj alice").unwrap().key, k(&"a".repeat(32)));
        assert!(r.by_name("carol").is_none());
        assert_eq!(r.slot_seconds(&k(&"b".repeat(32))), Some(600));
        assert_eq!(r.slot_seconds(&k(&"a".repeat(32))), None);
    }

    #[test]
    fn display_never_shows_a_key() {
        let r = reg();
        assert_eq!(r.display(&k(&"a".repeat(32))), "DJ Alice");
        let guest = r.display(&k("someonekey"));
        assert!(guest.starts_with(GUEST_PREFIX), "{guest}");
        assert!(!guest.contains("someonekey"));
        assert_eq!(guest, r.display(&k("someonekey")), "stable");
        assert_ne!(guest, r.display(&k("otherkey")));
        // No registry at all: still a guest name, never the key.
        let none = Registry::default();
        assert!(!none.in_use());
        assert_eq!(
            none.display(&k("k1")),
            format!("{GUEST_PREFIX}{}", k("k1").tag())
        );
        // An empty registry file still means "in use".
        let empty = Registry::from_streamers(vec![], true);
        assert!(empty.display(&k("k1")).starts_with(GUEST_PREFIX));
    }

    #[test]
    fn names_are_validated_and_unique_regardless_of_case() {
        let mut r = reg();
        for bad in [
            "",
            " x",
            "x ",
            "a\nb",
            "guest-1",
            "Guest-x",
            &"n".repeat(65),
        ] {
            let e = r.add(bad, None, k(&"c".repeat(32)), 3).unwrap_err();
            assert_eq!(e.why(), Why::Invalid, "{bad:?}: {e}");
        }
        // Bidi overrides/isolates and other invisible format characters.
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200D}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2028}',
            '\u{E0041}',
        ] {
            let name = format!("DJ {c}evil");
            let e = r.add(&name, None, k(&"c".repeat(32)), 3).unwrap_err();
            assert_eq!(e.why(), Why::Invalid, "{name:?}: {e}");
            assert!(
                e.to_string().contains(&format!("U+{:04X}", c as u32)),
                "{e}"
            );
        }
        let e = r.add("BOB", None, k(&"c".repeat(32)), 3).unwrap_err();
        assert_eq!(e.why(), Why::Conflict, "{e}");
        assert!(r.add("Ünïcode DJ ☺", None, k(&"c".repeat(32)), 3).is_ok());
        assert_eq!(
            r.add("x", Some(8 * 86400), k(&"d".repeat(32)), 3)
                .unwrap_err()
                .why(),
            Why::Invalid
        );
    }

    #[test]
    fn keys_are_unique_and_valid() {
        let mut r = reg();
        let e = r.add("carol", None, k(&"a".repeat(32)), 3).unwrap_err();
        assert_eq!(e.why(), Why::Invalid);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn remove_and_rotate() {
        let mut r = reg();
        let old = r.rotate_key("bob", k(&"n".repeat(32)), 9).unwrap();
        assert_eq!(old, k(&"b".repeat(32)));
        assert!(r.by_key(&old).is_none());
        assert_eq!(r.by_key(&k(&"n".repeat(32))).unwrap().key_set_at, 9);
        assert_eq!(
            r.rotate_key("zed", k(&"m".repeat(32)), 9)
                .unwrap_err()
                .why(),
            Why::NotFound
        );
        assert_eq!(r.remove("Bob").unwrap().name, "bob");
        assert_eq!(r.remove("bob").unwrap_err().why(), Why::NotFound);
        r.set_slot("dj alice", Some(0)).unwrap();
        assert_eq!(r.slot_seconds(&k(&"a".repeat(32))), Some(0));
    }

    #[test]
    fn page_links_are_unique_rotatable_and_not_keys() {
        let mut r = reg();
        assert!(r.by_link("").is_none(), "no link yet matches nothing");
        assert_eq!(r.set_link("dj alice", "l".repeat(32)).unwrap(), "DJ Alice");
        assert_eq!(r.by_link(&"l".repeat(32)).unwrap().name, "DJ Alice");
        assert!(r.by_link(&"a".repeat(32)).is_none(), "a key is not a link");
        let e = r.set_link("bob", "l".repeat(32)).unwrap_err();
        assert_eq!(e.why(), Why::Invalid, "{e}");
        assert_eq!(
            r.set_link("bob", "bad token".into()).unwrap_err().why(),
            Why::Invalid
        );
        assert_eq!(
            r.set_link("zed", "z".repeat(32)).unwrap_err().why(),
            Why::NotFound
        );
        r.set_link("DJ Alice", "m".repeat(32)).unwrap();
        assert!(r.by_link(&"l".repeat(32)).is_none(), "the old link is dead");
        assert_eq!(r.by_link(&"m".repeat(32)).unwrap().name, "DJ Alice");
    }

    #[test]
    fn files_without_page_tokens_still_load() {
        let d = TempDir::new("oldfile");
        fs::write(
            path(&d.0),
            r#"{"version":1,"streamers":[{"name":"a","key":"k1","key_set_at":3}]}"#,
        )
        .unwrap();
        let r = load(&d.0).unwrap();
        assert_eq!(r.by_name("a").unwrap().link_token, "");
        update(&d.0, |r| r.set_link("a", "t".repeat(32)).map(|_| ())).unwrap();
        let text = fs::read_to_string(path(&d.0)).unwrap();
        assert!(text.contains(&"t".repeat(32)), "{text}");
        assert_eq!(
            load(&d.0).unwrap().by_link(&"t".repeat(32)).unwrap().key,
            k("k1")
        );
        fs::write(
            path(&d.0),
            r#"{"version":1,"streamers":[{"name":"a","key":"k1","link_token":"x"},{"name":"b","key":"k2","link_token":"x"}]}"#,
        )
        .unwrap();
        assert!(load(&d.0).unwrap_err().to_string().contains("page token"));
    }

    #[test]
    fn file_round_trip_is_private_and_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let d = TempDir::new("file");
        assert!(!load(&d.0).unwrap().in_use());
        assert!(signature(&d.0).is_none());
        let (key, _) = update(&d.0, |r| {
            let k = new_key()?;
            r.add("alice", Some(30), k.clone(), 5)?;
            Ok(k)
        })
        .unwrap();
        assert_eq!(key.expose().len(), 2 * KEY_BYTES);
        let mode = fs::metadata(path(&d.0)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sig1 = signature(&d.0).unwrap();
        let back = load(&d.0).unwrap();
        assert!(back.in_use());
        assert_eq!(back.by_key(&key).unwrap().name, "alice");
        update(&d.0, |r| r.remove("alice").map(|_| ())).unwrap();
        assert_ne!(signature(&d.0), Some(sig1));
        let empty = load(&d.0).unwrap();
        assert!(empty.is_empty() && empty.in_use());
        // A failed change writes nothing.
        let sig2 = signature(&d.0);
        assert!(update(&d.0, |r| r.remove("nobody").map(|_| ())).is_err());
        assert_eq!(signature(&d.0), sig2);
    }

    #[test]
    fn the_file_format_is_unchanged_by_the_key_type() {
        // streamers.json as every version since 1 wrote it: read and
        // written again, it comes back byte for byte (keys are plain strings).
        let d = TempDir::new("format");
        let text = "{\n  \"version\": 1,\n  \"streamers\": [\n    {\n      \"name\": \"alice\",\n      \"key\": \"k-1_A\",\n      \"slot_seconds\": 30,\n      \"key_set_at\": 5,\n      \"link_token\": \"tok\"\n    },\n    {\n      \"name\": \"bob\",\n      \"key\": \"k2\",\n      \"key_set_at\": 0\n    }\n  ]\n}\n";
        fs::write(path(&d.0), text).unwrap();
        let (_, reg) = update(&d.0, |_| Ok(())).unwrap();
        assert_eq!(reg.by_key(&k("k-1_A")).unwrap().name, "alice");
        assert_eq!(fs::read_to_string(path(&d.0)).unwrap(), text);
    }

    #[test]
    fn corrupt_or_inconsistent_files_are_reported() {
        let d = TempDir::new("corrupt");
        for (text, want) in [
            ("{nope", "unreadable"),
            (r#"{"version":7,"streamers":[]}"#, "unsupported version 7"),
            (
                r#"{"version":1,"streamers":[{"name":"a","key":"k1"},{"name":"A","key":"k2"}]}"#,
                "listed twice",
            ),
            (
                r#"{"version":1,"streamers":[{"name":"a","key":"k1"},{"name":"b","key":"k1"}]}"#,
                "already in use",
            ),
            (
                r#"{"version":1,"streamers":[{"name":"a","key":"k1"},{"name":"b","key":"k 2"}]}"#,
                "the key of \"b\": a stream key must match",
            ),
            (
                r#"{"version":1,"streamers":[{"name":"a","key":""}]}"#,
                "the key of \"a\": a stream key must match",
            ),
            (
                r#"{"version":1,"streamers":[{"name":"a","key":7}]}"#,
                "invalid type",
            ),
        ] {
            fs::write(path(&d.0), text).unwrap();
            let e = load(&d.0).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
