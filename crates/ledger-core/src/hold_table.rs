//! Holds by id, in id order. A hold's id is the transaction that opened it, so holds
//! arrive in ascending id order and the table is a queue of chunks: opening a hold
//! appends to the newest chunk, and finding one starts from the newest chunk (a post or
//! a void usually follows its hold closely, so the search stays in memory the cache
//! already holds). A forgotten hold leaves a gap in its chunk; a chunk with no hold left
//! is dropped. A hash map would scatter consecutive holds over the whole table, a cache
//! miss on every open and every post once it outgrows the cache.

use std::collections::VecDeque;

use crate::holds::{Hold, HoldId};

/// Holds per chunk: a chunk's ids (8 KiB) are binary-searched in a few cache lines, and a
/// long-open hold keeps at most this many slots of its neighbours alive.
const CHUNK: usize = 1024;

/// Consecutive holds, by id.
#[derive(Clone, Debug)]
struct Chunk {
    /// The chunk's first id (a gap stays a gap: ids are never removed), kept here so that
    /// choosing a chunk reads no chunk's memory.
    first: HoldId,
    /// Ascending, distinct.
    ids: Vec<HoldId>,
    /// `holds[i]` is hold `ids[i]`, `None` once forgotten.
    holds: Vec<Option<Hold>>,
    /// Holds not forgotten.
    live: usize,
}

impl Chunk {
    fn new(id: HoldId, hold: Hold) -> Chunk {
        let mut ids = Vec::with_capacity(CHUNK);
        let mut holds = Vec::with_capacity(CHUNK);
        ids.push(id);
        holds.push(Some(hold));
        Chunk {
            first: id,
            ids,
            holds,
            live: 1,
        }
    }

    /// Where `id` is in `ids`. Ids are distinct and ascending, so the one `id` can be
    /// at most `id - first` places from the start and at least `last - id` from the
    /// end: where ids are dense (most transactions open holds) that leaves one place,
    /// and a recent hold is searched for among the last few only.
    #[inline]
    fn position(&self, id: HoldId) -> Option<usize> {
        let last = *self.ids.last()?;
        if id < self.first || id > last {
            return None;
        }
        let len = self.ids.len() as u64;
        let low = (len - 1).saturating_sub(last - id) as usize;
        let high = (id - self.first).min(len - 1) as usize;
        let at = low + self.ids[low..=high].binary_search(&id).ok()?;
        Some(at)
    }
}

/// The holds the state machine remembers, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct HoldTable {
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
        match self.chunks.back_mut() {
            Some(chunk) if chunk.ids.len() < CHUNK => {
                chunk.ids.push(id);
                chunk.holds.push(Some(hold));
                chunk.live += 1;
            }
            _ => self.chunks.push_back(Chunk::new(id, hold)),
        }
    }

    /// The chunk that would hold `id`: the last whose first id is at most `id`. A hold
    /// acted on is usually recent: the newest two chunks are tried first.
    #[inline]
    fn chunk_of(&self, id: HoldId) -> Option<usize> {
        let newest = self.chunks.len().checked_sub(1)?;
        if id >= self.chunks[newest].first {
            return Some(newest);
        }
        if newest > 0 && id >= self.chunks[newest - 1].first {
            return Some(newest - 1);
        }
        self.chunks
            .partition_point(|chunk| chunk.first <= id)
            .checked_sub(1)
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
                .ids
                .iter()
                .zip(&chunk.holds)
                .filter_map(|(&id, hold)| hold.as_ref().map(|hold| (id, hold)))
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
        for id in 1..=(3 * CHUNK as u64) {
            table.push(id, hold(id));
        }
        assert_eq!(table.chunks.len(), 3);
        // Empty the middle chunk: only it goes.
        for id in (CHUNK as u64 + 1)..=(2 * CHUNK as u64) {
            assert_eq!(table.remove(id), Some(hold(id)));
        }
        assert_eq!(table.chunks.len(), 2);
        assert_eq!(table.get(CHUNK as u64), Some(&hold(CHUNK as u64)));
        assert_eq!(table.get(CHUNK as u64 + 1), None);
        assert_eq!(
            table.get(2 * CHUNK as u64 + 1),
            Some(&hold(2 * CHUNK as u64 + 1))
        );
        assert_eq!(table.iter().count(), 2 * CHUNK);
    }

    #[test]
    #[should_panic(expected = "is added after")]
    fn an_id_not_above_the_last_is_refused() {
        let mut table = HoldTable::default();
        table.push(5, hold(1));
        table.push(5, hold(1));
    }
}
