//! [`NumberedName`]: the `prefix<20 digits>suffix` file names of segments and snapshots.

/// A family of numbered file names, `<prefix><number, 20 digits><suffix>`, and their
/// temporary twins `<name>.tmp` (a file being created, never read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberedName {
    prefix: &'static str,
    suffix: &'static str,
}

/// Digits of the number in a name: every `u64` fits, and names sort as numbers.
const DIGITS: usize = 20;

/// What a temporary name adds.
const TEMP_SUFFIX: &str = ".tmp";

impl NumberedName {
    /// Names `<prefix><number>< suffix>`.
    #[must_use]
    pub const fn new(prefix: &'static str, suffix: &'static str) -> NumberedName {
        NumberedName { prefix, suffix }
    }

    /// The name of `number`.
    #[must_use]
    pub fn name(&self, number: u64) -> String {
        format!("{}{number:020}{}", self.prefix, self.suffix)
    }

    /// The temporary name of `number`.
    #[must_use]
    pub fn temp_name(&self, number: u64) -> String {
        format!("{}{TEMP_SUFFIX}", self.name(number))
    }

    /// The number in `name`, or `None` unless `name` is exactly one of these names.
    #[must_use]
    pub fn parse(&self, name: &str) -> Option<u64> {
        let digits = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
        if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Whether `name` is a temporary name of this family.
    #[must_use]
    pub fn is_temp(&self, name: &str) -> bool {
        name.strip_suffix(TEMP_SUFFIX)
            .is_some_and(|base| base.starts_with(self.prefix) && base.ends_with(self.suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: NumberedName = NumberedName::new("wal-", ".seg");

    #[test]
    fn names_round_trip_and_sort_as_numbers() {
        for n in [0, 1, 9, 10, 12_345, u64::MAX] {
            assert_eq!(SEG.parse(&SEG.name(n)), Some(n));
            assert!(SEG.is_temp(&SEG.temp_name(n)));
            assert!(!SEG.is_temp(&SEG.name(n)));
            assert_eq!(SEG.parse(&SEG.temp_name(n)), None);
        }
        assert!(SEG.name(9) < SEG.name(10));
        assert_eq!(SEG.name(7), "wal-00000000000000000007.seg");
    }

    #[test]
    fn other_names_are_refused() {
        for name in [
            "wal-1.seg",
            "wal-0000000000000000000a.seg",
            "wal-00000000000000000001.seg.bak",
            "x-00000000000000000001.seg",
            "wal-000000000000000000001.seg",
            "wal.lock",
        ] {
            assert_eq!(SEG.parse(name), None, "{name}");
        }
        assert!(!SEG.is_temp("wal.lock.tmp"));
    }
}
