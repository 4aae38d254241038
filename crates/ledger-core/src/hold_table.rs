//! Holds by id, in id order. A hold's id is the transaction that opened it, so holds
//! arrive in ascending id order. The table is a queue of chunks, each covering a fixed
//! range of ids: a bitmap says which ids of the range are holds, and the holds sit in id
//! order in a vector beside it, so finding hold `id` is a bitmap rank, with no search.
//! Opening a hold appends; a post or void usually follows its hold closely, so it finds
//! it in memory the cache already holds. A forgotten hold leaves a gap; a chunk with no
//! hold left is dropped. A hash map would scatter consecutive holds over the whole table:
//! a cache miss on every open and every post once it outgrows the cache.

use std::collections::VecDeque;

use crate::holds::{Hold, HoldId};

/// Ids per chunk: a chunk's bitmap is two cache lines. Where holds are sparse (one
/// transaction in thousands), a chunk holds one or a few of them.
const SPAN: u64 = 1024;
const WORDS: usize = (SPAN / 64) as usize;

/// The holds among ids `base..base + SPAN`.
#[derive(Clone, Debug)]
struct Chunk {
    base: HoldId,
    /// Bit `i`: id `base + i` is a hold (it stays set once the hold is forgotten, so the
    /// places of the others do not move).
    bits: [u64; WORDS],
    /// `before[w]`: how many bits are set in the words below `w`, for the words in use.
    before: [u16; WORDS],
    /// Words up to the one of the last id added.
    used_words: usize,
    /// The holds, by id; `None` once forgotten.
    holds: Vec<Option<Hold>>,
    /// Holds not forgotten.
    live: usize,
}

impl Chunk {
    fn new(base: HoldId) -> Chunk {
        Chunk {
            base,
            bits: [0; WORDS],
            before: [0; WORDS],
            used_words: 0,
            holds: Vec::new(),
            live: 0,
        }
    }

    /// Adds hold `id`, above every id added before, in this chunk's range.
    fn push(&mut self, id: HoldId, hold: Hold) {
        let offset = id - self.base;
        let word = (offset / 64) as usize;
        // The words from the first unused one up to this one hold nothing below it.
        let count = u16::try_from(self.holds.len()).expect("a chunk holds at most SPAN ids");
        for w in self.used_words..=word {
            self.before[w] = count;
        }
        self.used_words = word + 1;
        self.bits[word] |= 1 << (offset % 64);
        self.holds.push(Some(hold));
        // The next holds go right after: their memory is likely not in cache yet.
        crate::transactor::prefetch_ptr(self.holds.as_ptr().wrapping_add(self.holds.len() + 3));
        self.live += 1;
    }

    /// Where hold `id` (in this chunk's range) is in `holds`, if it is one.
    #[inline]
    fn position(&self, id: HoldId) -> Option<usize> {
        let offset = id.checked_sub(self.base).filter(|&o| o < SPAN)?;
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        let bits = self.bits[word];
        if bits & (1 << bit) == 0 {
            return None;
        }
        let below = (bits & ((1 << bit) - 1)).count_ones() as usize;
        Some(usize::from(self.before[word]) + below)
    }

    /// The ids of the holds, in order (forgotten ones included).
    fn ids(&self) -> impl Iterator<Item = HoldId> + '_ {
        self.bits.iter().enumerate().flat_map(move |(w, &bits)| {
            let base = self.base + 64 * w as u64;
            BitIter(bits).map(move |bit| base + bit)
        })
    }
}

/// The set bits of a word, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(u64::from(bit))
    }
}

/// The holds the state machine remembers, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct HoldTable {
    /// By range, ascending; no chunk is empty.
    chunks: VecDeque<Chunk>,
    /// The highest id ever added (0: none): the next must be above it.
    last: HoldId,
}

impl HoldTable {
    /// Whether `id` may be added: it is above every id added before.
    #[inline]
    pub fn accepts(&self, id: HoldId) -> bool {
        id > self.last
    }

    /// Adds hold `id`, above every id added before.
    #[inline]
    pub fn push(&mut self, id: HoldId, hold: Hold) {
        assert!(self.accepts(id), "hold {id} is added after {}", self.last);
        self.last = id;
        let base = id - id % SPAN;
        if self.chunks.back().is_none_or(|chunk| chunk.base != base) {
            self.chunks.push_back(Chunk::new(base));
        }
        let chunk = self.chunks.back_mut().expect("a chunk for the new id");
        chunk.push(id, hold);
    }

    /// The chunk covering `id`, if any. A hold acted on is usually recent (the newest
    /// two chunks), and one forgotten usually the oldest: those are tried first.
    #[inline]
    fn chunk_of(&self, id: HoldId) -> Option<usize> {
        let base = id - id % SPAN;
        let newest = self.chunks.len().checked_sub(1)?;
        if self.chunks[newest].base == base {
            return Some(newest);
        }
        if newest > 0 && self.chunks[newest - 1].base == base {
            return Some(newest - 1);
        }
        if self.chunks[0].base == base {
            return Some(0);
        }
        let at = self.chunks.partition_point(|chunk| chunk.base < base);
        (self.chunks.get(at)?.base == base).then_some(at)
    }

    #[inline]
    fn find(&self, id: HoldId) -> Option<(usize, usize)> {
        let chunk = self.chunk_of(id)?;
        let at = self.chunks[chunk].position(id)?;
        self.chunks[chunk].holds[at]
            .is_some()
            .then_some((chunk, at))
    }

    #[inline]
    pub fn get(&self, id: HoldId) -> Option<&Hold> {
        let (chunk, at) = self.find(id)?;
        self.chunks[chunk].holds[at].as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, id: HoldId) -> Option<&mut Hold> {
        let (chunk, at) = self.find(id)?;
        self.chunks[chunk].holds[at].as_mut()
    }

    /// A hint: hold `id` will be looked up soon.
    #[inline]
    pub fn prefetch(&self, id: HoldId) {
        if let Some(chunk) = self.chunk_of(id)
            && let Some(at) = self.chunks[chunk].position(id)
        {
            crate::transactor::prefetch_read(&self.chunks[chunk].holds[at]);
        }
    }

    /// Forgets hold `id`, returning it.
    pub fn remove(&mut self, id: HoldId) -> Option<Hold> {
        let (chunk, at) = self.find(id)?;
        let hold = self.chunks[chunk].holds[at].take();
        self.chunks[chunk].live -= 1;
        if self.chunks[chunk].live == 0 {
            // Holds are mostly forgotten oldest first: almost always the front.
            self.chunks.remove(chunk);
        }
        hold
    }

    /// Every hold, by id.
    pub fn iter(&self) -> impl Iterator<Item = (HoldId, &Hold)> + '_ {
        self.chunks.iter().flat_map(|chunk| {
            chunk
                .ids()
                .zip(&chunk.holds)
                .filter_map(|(id, hold)| hold.as_ref().map(|hold| (id, hold)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::holds::HoldState;

    fn hold(amount: u64) -> Hold {
        Hold {
            from: 1,
            to: 2,
            amount,
            expires_at_ns: 0,
            state: HoldState::Open,
            posted: 0,
            closed_at_ns: 0,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Add a hold this far above the last id.
        Push(u64),
        /// Forget the n-th remembered hold (modulo how many there are).
        Remove(usize),
        /// Look up this id (modulo the last id plus one).
        Get(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u64..4).prop_map(Op::Push),
            1 => (60u64..3000).prop_map(Op::Push),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<u64>().prop_map(Op::Get),
        ]
    }

    proptest! {
        /// The table answers as a map by id does, through chunk boundaries and gaps.
        #[test]
        fn behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 1..6000)) {
            let mut table = HoldTable::default();
            let mut model = BTreeMap::new();
            let mut last = 0;
            for op in ops {
                match op {
                    Op::Push(step) => {
                        last += step;
                        prop_assert!(table.accepts(last));
                        table.push(last, hold(last));
                        model.insert(last, hold(last));
                    }
                    Op::Remove(n) => {
                        let Some(&id) = model.keys().nth(n % model.len().max(1)) else {
                            continue;
                        };
                        prop_assert_eq!(table.remove(id), model.remove(&id));
                        prop_assert_eq!(table.remove(id), None);
                    }
                    Op::Get(id) => {
                        let id = id % (last + 2);
                        prop_assert_eq!(table.get(id), model.get(&id));
                        prop_assert_eq!(table.get_mut(id).copied(), model.get(&id).copied());
                    }
                }
                prop_assert_eq!(table.iter().count(), model.len());
            }
            let listed: Vec<_> = table.iter().map(|(id, h)| (id, *h)).collect();
            let expected: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(listed, expected);
            prop_assert!(!table.accepts(last));
        }
    }

    #[test]
    fn a_chunk_with_no_hold_left_is_dropped() {
        let mut table = HoldTable::default();
        for id in 1..3 * SPAN {
            table.push(id, hold(id));
        }
        assert_eq!(table.chunks.len(), 3);
        // Empty the middle chunk: only it goes.
        for id in SPAN..2 * SPAN {
            assert_eq!(table.remove(id), Some(hold(id)));
        }
        assert_eq!(table.chunks.len(), 2);
        assert_eq!(table.get(SPAN - 1), Some(&hold(SPAN - 1)));
        assert_eq!(table.get(SPAN), None);
        assert_eq!(table.get(2 * SPAN), Some(&hold(2 * SPAN)));
        assert_eq!(table.iter().count(), 2 * SPAN as usize - 1);
    }

    #[test]
    #[should_panic(expected = "is added after")]
    fn an_id_not_above_the_last_is_refused() {
        let mut table = HoldTable::default();
        table.push(5, hold(1));
        table.push(5, hold(1));
    }
}
