//! What makes a new streamer name fit to show: at least one character a
//! viewer can see, no character that shows as nothing, and no look-alike
//! of a name already registered (Unicode's confusables skeleton, UTS #39,
//! from the `unicode-security` crate: Cyrillic `аlice` and Latin `alice`
//! share one).
//!
//! Only names being added are held to these rules: a registry file written
//! before them still loads (refusing it would stop the daemon).

use unicode_normalization::char::is_combining_mark;

/// U+2800 BRAILLE PATTERN BLANK: not whitespace, not ignorable, and yet
/// it shows as an empty cell (a favourite "invisible name").
const BRAILLE_BLANK: char = '\u{2800}';

/// Characters that show as nothing: Unicode's default-ignorable code
/// points (Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the combining
/// grapheme joiner U+034F, variation selectors, …), which the confusables
/// skeleton drops, and the braille blank.
pub(crate) fn shows_as_nothing(c: char) -> bool {
    let mut buf = [0u8; 4];
    let one = c.encode_utf8(&mut buf);
    let blank = unicode_security::skeleton(one).next().is_none();
    c == BRAILLE_BLANK || blank
}

/// A character that leaves a mark of its own: not a space, not a control,
/// not blank, not a combining mark (which only decorates another).
fn visible(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !shows_as_nothing(c) && !is_combining_mark(c)
}

/// Why `name` cannot be a new streamer name, if it cannot.
pub(crate) fn invisible_part(name: &str) -> Option<String> {
    if let Some(c) = name.chars().find(|&c| shows_as_nothing(c)) {
        return Some(format!(
            "a streamer name must not contain characters that show as nothing \
             (found U+{:04X}: Hangul fillers, blank braille cells and similar \
             characters make a name look empty or like another)",
            c as u32
        ));
    }
    if !name.chars().any(visible) {
        return Some("a streamer name needs at least one visible character".into());
    }
    None
}

/// The form two names that look alike share: the UTS #39 skeleton of the
/// lower-cased name (names are unique regardless of case already).
pub(crate) fn skeleton(name: &str) -> String {
    unicode_security::skeleton(&name.to_lowercase()).collect()
}

/// Whether `a` and `b` would be mistaken for each other on screen.
pub(crate) fn confusable(a: &str, b: &str) -> bool {
    skeleton(a) == skeleton(b) || unicode_security::skeleton(a).eq(unicode_security::skeleton(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_names_are_found() {
        for name in [
            "\u{3164}",
            "\u{FFA0}",
            "\u{115F}",
            "\u{2800}",
            "\u{034F}",
            "\u{3164}\u{3164}",
            "a\u{3164}",
            "DJ\u{2800}X",
        ] {
            assert!(invisible_part(name).is_some(), "{name:?}");
        }
        for name in ["\u{0301}", "\u{00A0}", "\u{3000}"] {
            assert!(
                invisible_part(name)
                    .unwrap()
                    .contains("at least one visible"),
                "{name:?}"
            );
        }
        for name in ["alice", "DJ Ünïcode ☺", "東京", "é", "e\u{0301}"] {
            assert_eq!(invisible_part(name), None, "{name:?}");
        }
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        // Cyrillic а (U+0430), Greek ο, digit one and capital I for l.
        assert!(confusable("\u{0430}lice", "alice"));
        assert!(confusable("b\u{03BF}b", "bob"));
        assert!(confusable("DJ 1ce", "DJ Ice"));
        assert!(confusable("Alice", "alice"));
        assert!(!confusable("alice", "alicia"));
        assert!(!confusable("bob", "rob"));
    }
}
