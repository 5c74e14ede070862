//! Stream keys as a type the compiler keeps out of public output and logs.
//!
//! A [`StreamKey`] is built only by [`StreamKey::parse`] (the rule nginx's
//! hook names follow, `[A-Za-z0-9_-]{1,64}`), so every key in the program
//! is valid. It has no `Display`, no `Deref` to `str`, no `Serialize` or
//! `Deserialize`, no `From<String>`, and its `Debug` prints the key's
//! fingerprint: a key reaches a `format!`, a log line, a JSON answer or a
//! file only through [`StreamKey::expose`], which every such site calls by
//! name (`grep -n '\.expose()' src` lists them all).
//!
//! The files that hold keys (queue snapshot and journal, `streamers.json`)
//! name the fields `#[serde(with = "crate::key::persist")]` (or its `vec` /
//! `map` variants): the format on disk is the plain string it always was,
//! and reading validates, so an invalid key in a file is an error there.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Longest stream key, in bytes (ASCII only, so also in characters).
pub(crate) const MAX_LEN: usize = 64;

/// A stream key (nginx-rtmp's stream name in the ingest app).
///
/// It cannot be printed by accident: there is no `Display`, so this does
/// not compile:
///
/// ```compile_fail
/// let key = motherstream::key::StreamKey::parse("secret").unwrap();
/// let _ = format!("{}", key);
/// ```
///
/// nor can it be serialized without naming [`persist`]:
///
/// ```compile_fail
/// let key = motherstream::key::StreamKey::parse("secret").unwrap();
/// let _ = serde_json::to_string(&key);
/// ```
///
/// `{:?}` shows only the fingerprint:
///
/// ```
/// let key = motherstream::key::StreamKey::parse("secret").unwrap();
/// let shown = format!("{key:?}");
/// assert!(shown.starts_with("StreamKey(key#") && !shown.contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(Arc<str>);

/// Why a string is not a stream key. Its message never repeats the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong(usize),
    BadChar,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stream key must match [A-Za-z0-9_-]{1,64}")?;
        match self {
            KeyError::Empty => f.write_str(" (it is empty)"),
            KeyError::TooLong(n) => write!(f, " (it is {n} bytes long)"),
            KeyError::BadChar => f.write_str(" (it has a character outside that set)"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The rule for stream keys, and for the other names that travel the same
/// way (page tokens, config names): `^[A-Za-z0-9_-]{1,64}$`.
pub(crate) fn check(s: &str) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(KeyError::TooLong(s.len()));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KeyError::BadChar);
    }
    Ok(())
}

impl StreamKey {
    /// The only way to make a key: from text that follows the rule.
    pub fn parse(s: &str) -> Result<StreamKey, KeyError> {
        check(s)?;
        Ok(StreamKey(Arc::from(s)))
    }

    /// The key itself: the one explicit door. Call it only to build an
    /// RTMP URL (`rtmp://…/live/<key>`), to name the stream in an nginx
    /// control call, to persist it ([`persist`]), and for the admin's
    /// explicit show-keys output. Never for a log line or public output:
    /// use a display name or [`StreamKey::fingerprint`].
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable tag of the key for logs (`key#1a2b3c4d`): enough to
    /// tell attempts apart, useless for publishing, and (an HMAC under the
    /// install's secret, see [`crate::tag`]) no help in guessing the key.
    pub(crate) fn fingerprint(&self) -> String {
        format!("key#{}", self.tag())
    }

    /// The bare tag of [`StreamKey::fingerprint`] (the public name of an
    /// unregistered key is `guest-<tag>`).
    pub(crate) fn tag(&self) -> String {
        crate::tag::of(&self.0)
    }

    /// The first `n` characters, for the streamer's own page (it shows 4
    /// of a 32-character key, so they can tell which key they pasted): a
    /// hint, never the key.
    pub(crate) fn hint(&self, n: usize) -> String {
        self.0.chars().take(n).collect()
    }

    /// Compare in constant time (registry admission: the time taken says
    /// nothing about how much of a key matched).
    pub(crate) fn ct_eq(&self, other: &StreamKey) -> bool {
        crate::secret::ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({})", self.fingerprint())
    }
}

/// `#[serde(with = "crate::key::persist")]` for a `StreamKey` field in a
/// file: the key as a plain JSON string, validated when read. (`vec` and
/// `map` are the same for `Vec<StreamKey>` and `BTreeMap<StreamKey, V>`.)
pub(crate) mod persist {
    use super::*;
    use serde::de::Error as _;
    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(key: &StreamKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(key.expose())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StreamKey, D::Error> {
        let s = String::deserialize(d)?;
        StreamKey::parse(&s).map_err(D::Error::custom)
    }

    pub(crate) mod vec {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            keys: &[StreamKey],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(keys.len()))?;
            for k in keys {
                seq.serialize_element(k.expose())?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<StreamKey>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|s| StreamKey::parse(s).map_err(D::Error::custom))
                .collect()
        }
    }

    pub(crate) mod map {
        use super::*;

        pub(crate) fn serialize<S: Serializer, V: Serialize>(
            m: &BTreeMap<StreamKey, V>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(m.len()))?;
            for (k, v) in m {
                map.serialize_entry(k.expose(), v)?;
            }
            map.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
            d: D,
        ) -> Result<BTreeMap<StreamKey, V>, D::Error> {
            BTreeMap::<String, V>::deserialize(d)?
                .into_iter()
                .map(|(k, v)| Ok((StreamKey::parse(&k).map_err(D::Error::custom)?, v)))
                .collect()
        }
    }
}

#[cfg(test)]
pub(crate) fn k(s: &str) -> StreamKey {
    StreamKey::parse(s).expect("a valid test key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn debug_shows_the_fingerprint_never_the_key() {
        let key = k("supersecretkey");
        let shown = format!("{key:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert_eq!(shown, format!("StreamKey({})", key.fingerprint()));
        // Inside other Debug output too (log lines of whole structs).
        let nested = format!("{:?}", (Some(&key), vec![key.clone()]));
        assert!(!nested.contains("supersecret"), "{nested}");
        let pretty = format!("{key:#?}");
        assert!(!pretty.contains("supersecret"), "{pretty}");
    }

    #[test]
    fn fingerprint_hides_the_key_and_is_stable() {
        let f = k("supersecretkey").fingerprint();
        assert!(f.starts_with("key#") && f.len() == 12, "{f}");
        assert!(!f.contains("secret"));
        assert_eq!(f, k("supersecretkey").fingerprint());
        assert_ne!(f, k("otherkey").fingerprint());
        assert_eq!(k("abcdefgh").hint(4), "abcd");
        assert_eq!(f, format!("key#{}", k("supersecretkey").tag()));
    }

    #[test]
    fn parse_follows_the_hook_rule() {
        assert_eq!(StreamKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            StreamKey::parse(&"a".repeat(65)),
            Err(KeyError::TooLong(65))
        );
        assert!(StreamKey::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "a b",
            "a/b",
            "../x",
            "k?x=1",
            "k&y",
            "ключ",
            "a\u{202e}b",
            "a\nb",
            "a\0",
            "a.b",
            "a%20",
        ] {
            assert_eq!(StreamKey::parse(bad), Err(KeyError::BadChar), "{bad:?}");
        }
        for good in ["a", "A-z_09", "-", "_"] {
            assert_eq!(StreamKey::parse(good).unwrap().expose(), good);
        }
        // A multi-byte string within 64 characters but over 64 bytes.
        assert_eq!(
            StreamKey::parse(&"é".repeat(40)),
            Err(KeyError::TooLong(80))
        );
    }

    #[test]
    fn errors_never_repeat_the_text() {
        for bad in ["", "sec ret", &"s".repeat(70)] {
            let e = StreamKey::parse(bad).unwrap_err().to_string();
            assert!(e.contains("[A-Za-z0-9_-]{1,64}"), "{e}");
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn equality_ordering_and_constant_time_compare() {
        assert_eq!(k("a"), k("a"));
        assert_ne!(k("a"), k("A"));
        assert!(k("a") < k("b") && k("B") < k("a"), "byte order, as str");
        assert!(k("abc").ct_eq(&k("abc")));
        assert!(!k("abc").ct_eq(&k("abd")));
        assert!(!k("abc").ct_eq(&k("ab")));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct File {
        #[serde(with = "persist")]
        one: StreamKey,
        #[serde(with = "persist::vec")]
        many: Vec<StreamKey>,
        #[serde(with = "persist::map")]
        by: BTreeMap<StreamKey, u64>,
    }

    #[test]
    fn persist_round_trips_as_plain_strings() {
        let f = File {
            one: k("alpha"),
            many: vec![k("b"), k("a")],
            by: [(k("z"), 1), (k("m"), 2)].into_iter().collect(),
        };
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(
            text,
            r#"{"one":"alpha","many":["b","a"],"by":{"m":2,"z":1}}"#
        );
        let back: File = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn persist_refuses_invalid_keys() {
        for text in [
            r#"{"one":"a b","many":[],"by":{}}"#,
            r#"{"one":"","many":[],"by":{}}"#,
            r#"{"one":"a","many":["ok","x/../y"],"by":{}}"#,
            r#"{"one":"a","many":[],"by":{"bad key":1}}"#,
            r#"{"one":7,"many":[],"by":{}}"#,
        ] {
            let e = serde_json::from_str::<File>(text).unwrap_err().to_string();
            assert!(!e.contains("x/../y") && !e.contains("bad key"), "{e}");
        }
    }
}
