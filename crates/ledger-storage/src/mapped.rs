//! [`Mapped`]: a file's whole content, read-only.

use std::fmt;
use std::ops::Deref;

/// A file's bytes, as [`Storage::map`](crate::Storage::map) returns them: a read-only
/// memory map, or an owned copy. Either way they start at a 16-byte-aligned address, so
/// archives inside (rkyv) can be read in place.
pub struct Mapped(Inner);

enum Inner {
    Map(memmap2::Mmap),
    /// `u128` words keep the copy 16-byte aligned; `len` bytes of them are the file.
    Owned {
        words: Vec<u128>,
        len: usize,
    },
}

impl Mapped {
    pub(crate) fn from_mmap(map: memmap2::Mmap) -> Mapped {
        Mapped(Inner::Map(map))
    }

    pub(crate) fn empty() -> Mapped {
        Mapped(Inner::Owned {
            words: Vec::new(),
            len: 0,
        })
    }

    /// An aligned copy of `bytes` (what the simulated disk maps).
    #[cfg(any(test, feature = "sim"))]
    #[must_use]
    pub(crate) fn copy_of(bytes: &[u8]) -> Mapped {
        let mut words = vec![0_u128; bytes.len().div_ceil(16)];
        // SAFETY: `words` owns at least `bytes.len()` initialized bytes (its length in
        // u128 is rounded up), any byte pattern is a valid u128, and the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
        }
        Mapped(Inner::Owned {
            words,
            len: bytes.len(),
        })
    }
}

impl Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Map(map) => map,
            Inner::Owned { words, len } => {
                assert!(*len <= words.len() * 16, "an owned copy holds its bytes");
                // SAFETY: `words` holds at least `len` initialized bytes (asserted above),
                // borrowed for the lifetime of `self`.
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), *len) }
            }
        }
    }
}

impl fmt::Debug for Mapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Inner::Map(_) => "map",
            Inner::Owned { .. } => "copy",
        };
        f.debug_struct("Mapped")
            .field("kind", &kind)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_aligned_and_equal() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let copy = Mapped::copy_of(&bytes);
            assert_eq!(&*copy, &bytes[..]);
            assert_eq!(copy.as_ptr() as usize % 16, 0);
        }
    }
}
