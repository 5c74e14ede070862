//! The queue's public names in order, as one contiguous buffer: what the
//! read endpoints need, cheap to copy. The engine extends its copy when
//! streamers join at the end and rebuilds it only on other changes, so
//! publishing a new view after a join costs a memcpy, not work per entry.

use serde::ser::{Serialize, SerializeSeq, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    buf: String,
    /// End offset of each name in `buf`.
    ends: Vec<u32>,
    /// When each joined, unix ms.
    joined_at: Vec<u64>,
}

impl Names {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.buf.get(start..end)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        (0..self.len()).map(|i| (self.get(i).unwrap_or(""), self.joined_at[i]))
    }

    pub(crate) fn push(&mut self, name: &str, joined_at: u64) {
        self.buf.push_str(name);
        // Names are at most a few hundred bytes and queues far below 4 GiB.
        self.ends
            .push(u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
        self.joined_at.push(joined_at);
    }
}

impl<'a> FromIterator<(&'a str, u64)> for Names {
    fn from_iter<I: IntoIterator<Item = (&'a str, u64)>>(it: I) -> Names {
        let mut n = Names::default();
        for (name, at) in it {
            n.push(name, at);
        }
        n
    }
}

/// Serializes as a JSON array of the names (the `/queue-json` shape).
impl Serialize for Names {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for (name, _) in self.iter() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_iter_serialize() {
        let mut n: Names = [("a", 1), ("", 2), ("DJ \"Q\"", 3)].into_iter().collect();
        n.push("z", 4);
        assert_eq!(n.len(), 4);
        assert_eq!(n.get(0), Some("a"));
        assert_eq!(n.get(1), Some(""));
        assert_eq!(n.get(2), Some("DJ \"Q\""));
        assert_eq!(n.get(4), None);
        let v: Vec<_> = n.iter().collect();
        assert_eq!(v, [("a", 1), ("", 2), ("DJ \"Q\"", 3), ("z", 4)]);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"["a","","DJ \"Q\"","z"]"#
        );
        assert!(Names::default().is_empty());
    }
}
