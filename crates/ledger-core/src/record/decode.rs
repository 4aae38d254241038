//! Reading one records payload. Nothing here may panic, whatever the bytes.

use super::error::RecordError;
use super::varint::{self, VarintFault};
use super::{
    ACCOUNT_ID_LIMIT, AccountLink, CONFIGURED_HAS_MAX, CONFIGURED_HAS_PARENT, EFFECT_CONFIGURED,
    EFFECT_HOLD_EXPIRED, EFFECT_HOLD_OPENED, EFFECT_HOLD_POSTED, EFFECT_HOLD_VOIDED,
    EFFECT_REVERSED, FAIL_CODE_DUPLICATE, FAIL_CODE_MAX_V1, RECORD_EFFECTS_MAX, RECORD_ENTRIES_MAX,
    RECORD_FORMAT_V1, RECORD_FORMAT_VERSION, SHAPE_EMPTY, SHAPE_LIST, SHAPE_MASK, SHAPE_PAIR,
    SHAPE_REJECTED, TAG_EFFECTS, TAG_LINKED, TAG_RESERVED, TAG_RESERVED_V1, TAG_TIMESTAMP,
    TAG_USER_REF,
};
use crate::transaction::{
    AMOUNT_MAX, AccountConfig, Effect, Entry, EntryKind, FailReason, Outcome, SYSTEM_ACCOUNT, TxId,
};

/// The fewest bytes a List entry takes (four one-byte varints): bounds what an entry
/// count can make the decoder reserve.
const LIST_ENTRY_MIN: usize = 4;

/// One decoded record; `entries` borrows the decoder's buffer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub tx_id: TxId,
    pub timestamp_ns: u64,
    pub user_ref: u64,
    pub outcome: Outcome,
    /// Empty for a rejection and for a committed transaction without entries.
    pub entries: &'a [Entry],
    /// One per entry: the previous transaction of the entry's account (0: none).
    pub prev_tx_ids: &'a [TxId],
    /// What the transaction changed besides balances (version 2); usually empty.
    pub effects: &'a [Effect],
    /// The accounts the effects touched, with their back-links (see
    /// [`RecordRef::effect_links`](super::RecordRef::effect_links)).
    pub effect_links: &'a [AccountLink],
}

/// One decoded record without its entries: what [`FrameDecoder::next_record_into`]
/// returns after appending the entries to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub tx_id: TxId,
    pub timestamp_ns: u64,
    pub user_ref: u64,
    pub outcome: Outcome,
}

/// A record's body as [`FrameDecoder::record`] read it. A Pair's entries travel by value
/// (in registers once inlined); a List's are in the decoder's buffers.
enum Body {
    Rejected(FailReason),
    Pair([Entry; 2], [TxId; 2]),
    List,
    Empty,
}

/// Where a decoder stands before one record of a payload: enough to start decoding there
/// without reading the records before it (see [`FrameDecoder::seek`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeMark {
    /// The id of the record that starts here.
    pub tx_id: TxId,
    /// Its byte offset in the payload.
    pub pos: usize,
    /// The timestamp its delta is relative to (the record before it, or the base).
    pub previous_ns: u64,
}

/// Reads one records payload (docs/record-format.md), record by record.
///
/// Entries are decoded into one buffer the decoder owns and reuses, so a decoder kept
/// for a whole recovery allocates nothing per record once warm (see [`reset`](Self::reset)).
/// After an error the decoder is spent: every later call returns the same error.
#[derive(Debug)]
pub struct FrameDecoder<'p> {
    payload: &'p [u8],
    pos: usize,
    next_tx_id: TxId,
    remaining: u32,
    /// The payload's record count (from the frame header).
    count: u32,
    previous_ns: u64,
    entries: Vec<Entry>,
    prev_tx_ids: Vec<TxId>,
    /// The effects of the record last read.
    effects: Vec<Effect>,
    /// Its effects' accounts and back-links.
    effect_links: Vec<AccountLink>,
    /// Tag bits the payload's version leaves reserved.
    reserved: u8,
    /// The highest fail code the payload's version assigns.
    fail_code_max: u8,
    failed: Option<RecordError>,
}

impl<'p> FrameDecoder<'p> {
    /// Starts reading `payload`, a records frame holding `record_count` records from
    /// transaction `first_seq` (both from the WAL frame header). Reads the version byte
    /// and the base timestamp.
    pub fn new(
        payload: &'p [u8],
        first_seq: TxId,
        record_count: u32,
    ) -> Result<FrameDecoder<'p>, RecordError> {
        let mut decoder = FrameDecoder {
            payload: &[],
            pos: 0,
            next_tx_id: 0,
            remaining: 0,
            count: 0,
            previous_ns: 0,
            entries: Vec::new(),
            prev_tx_ids: Vec::new(),
            effects: Vec::new(),
            effect_links: Vec::new(),
            reserved: TAG_RESERVED,
            fail_code_max: u8::MAX,
            failed: None,
        };
        decoder.start(payload, first_seq, record_count)?;
        Ok(decoder)
    }

    /// Reads another payload with this decoder, keeping its entry buffer (so a recovery
    /// that reads many frames allocates once). The same checks as [`new`](Self::new).
    pub fn reset<'q>(
        self,
        payload: &'q [u8],
        first_seq: TxId,
        record_count: u32,
    ) -> Result<FrameDecoder<'q>, RecordError> {
        let mut decoder = FrameDecoder {
            payload: &[],
            pos: 0,
            next_tx_id: 0,
            remaining: 0,
            count: 0,
            previous_ns: 0,
            entries: self.entries,
            prev_tx_ids: self.prev_tx_ids,
            effects: self.effects,
            effect_links: self.effect_links,
            reserved: TAG_RESERVED,
            fail_code_max: u8::MAX,
            failed: None,
        };
        decoder.start(payload, first_seq, record_count)?;
        Ok(decoder)
    }

    fn start(&mut self, payload: &'p [u8], first_seq: TxId, count: u32) -> Result<(), RecordError> {
        if first_seq.checked_add(u64::from(count)).is_none() {
            return Err(RecordError::SequenceOverflow {
                first_seq,
                record_count: count,
            });
        }
        let Some(&version) = payload.first() else {
            return Err(RecordError::Truncated {
                tx_id: first_seq,
                offset: 0,
            });
        };
        match version {
            RECORD_FORMAT_V1 => {
                self.reserved = TAG_RESERVED_V1;
                self.fail_code_max = FAIL_CODE_MAX_V1;
            }
            RECORD_FORMAT_VERSION => {
                self.reserved = TAG_RESERVED;
                self.fail_code_max = u8::MAX;
            }
            _ => return Err(RecordError::UnknownVersion { version }),
        }
        self.payload = payload;
        self.pos = 1;
        self.next_tx_id = first_seq;
        self.previous_ns = self.varint(first_seq)?;
        self.remaining = count;
        self.count = count;
        Ok(())
    }

    /// The next record, or `Ok(None)` after exactly `record_count` records (and only if
    /// no byte follows the last one).
    ///
    /// Always inlined: returned through memory, the record's outcome was read back with a
    /// failed store-to-load forward, a stall per record that cost replay ~20%.
    #[inline(always)]
    pub fn next_record(&mut self) -> Result<Option<DecodedRecord<'_>>, RecordError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.remaining == 0 {
            return self.end().map(|()| None);
        }
        let tx_id = self.next_tx_id;
        match self.record(tx_id) {
            Ok((timestamp_ns, user_ref, body)) => {
                self.advance(tx_id, timestamp_ns);
                let (outcome, with_entries) = match body {
                    Body::Rejected(reason) => (Outcome::Rejected(reason), false),
                    Body::Pair([credit, debit], [credit_prev, debit_prev]) => {
                        set_pair(&mut self.prev_tx_ids, credit_prev, debit_prev);
                        set_pair(&mut self.entries, credit, debit);
                        (Outcome::Committed, true)
                    }
                    Body::List => (Outcome::Committed, true),
                    Body::Empty => (Outcome::Committed, false),
                };
                Ok(Some(DecodedRecord {
                    tx_id,
                    timestamp_ns,
                    user_ref,
                    outcome,
                    entries: if with_entries { &self.entries } else { &[] },
                    prev_tx_ids: if with_entries { &self.prev_tx_ids } else { &[] },
                    effects: &self.effects,
                    effect_links: &self.effect_links,
                }))
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The next record like [`next_record`](Self::next_record), with the same checks
    /// (back-links included), but its entries are appended to `entries` and its
    /// back-links are not kept. For readers that gather the entries of many records in
    /// one buffer (replay): a Pair's two entries are written there once, straight from
    /// the decoding, instead of into the decoder's buffer and then copied (a copy read
    /// back right after narrower stores, which stalled on store-to-load forwarding).
    #[inline(always)]
    pub fn next_record_into(
        &mut self,
        entries: &mut Vec<Entry>,
    ) -> Result<Option<RecordHead>, RecordError> {
        self.next_into(entries, None)
    }

    /// [`next_record_into`](Self::next_record_into) that also appends the record's
    /// back-links to `prev_tx_ids`, one per entry appended (for a reader that checks the
    /// chains: `ledger-cli replay`).
    #[inline(always)]
    pub fn next_record_links_into(
        &mut self,
        entries: &mut Vec<Entry>,
        prev_tx_ids: &mut Vec<TxId>,
    ) -> Result<Option<RecordHead>, RecordError> {
        self.next_into(entries, Some(prev_tx_ids))
    }

    /// Both `next_record_*_into`; inlined, so `None` costs nothing.
    #[inline(always)]
    fn next_into(
        &mut self,
        entries: &mut Vec<Entry>,
        links: Option<&mut Vec<TxId>>,
    ) -> Result<Option<RecordHead>, RecordError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.remaining == 0 {
            return self.end().map(|()| None);
        }
        let tx_id = self.next_tx_id;
        match self.record(tx_id) {
            Ok((timestamp_ns, user_ref, body)) => {
                self.advance(tx_id, timestamp_ns);
                let outcome = match body {
                    Body::Rejected(reason) => Outcome::Rejected(reason),
                    Body::Pair([credit, debit], [credit_prev, debit_prev]) => {
                        entries.reserve(2);
                        entries.push(credit);
                        entries.push(debit);
                        if let Some(links) = links {
                            links.reserve(2);
                            links.push(credit_prev);
                            links.push(debit_prev);
                        }
                        Outcome::Committed
                    }
                    Body::List => {
                        entries.extend_from_slice(&self.entries);
                        if let Some(links) = links {
                            links.extend_from_slice(&self.prev_tx_ids);
                        }
                        Outcome::Committed
                    }
                    Body::Empty => Outcome::Committed,
                };
                Ok(Some(RecordHead {
                    tx_id,
                    timestamp_ns,
                    user_ref,
                    outcome,
                }))
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// After the last record: the payload must end there.
    fn end(&mut self) -> Result<(), RecordError> {
        match self.payload.len().checked_sub(self.pos) {
            Some(0) | None => Ok(()),
            Some(bytes) => Err(self.fail(RecordError::TrailingBytes {
                offset: self.pos,
                bytes,
            })),
        }
    }

    /// Moves past record `tx_id`, read successfully.
    #[inline(always)]
    fn advance(&mut self, tx_id: TxId, timestamp_ns: u64) {
        self.remaining -= 1;
        self.next_tx_id = tx_id.wrapping_add(1);
        self.previous_ns = timestamp_ns;
    }

    /// The effects of the record the last `next_record*` call returned (empty if it had
    /// none): `next_record_into` returns only the record's head.
    #[inline]
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The effect links of the record the last `next_record*` call returned.
    #[inline]
    pub fn effect_links(&self) -> &[AccountLink] {
        &self.effect_links
    }

    /// How many records are left to read.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Where the decoder stands: before the next record.
    pub fn mark(&self) -> DecodeMark {
        DecodeMark {
            tx_id: self.next_tx_id,
            pos: self.pos,
            previous_ns: self.previous_ns,
        }
    }

    /// Continues from `mark` (taken by [`mark`](Self::mark) or
    /// [`FrameEncoder::mark`](super::FrameEncoder::mark) for this payload), skipping the
    /// records before it. A mark that cannot belong to this payload is an error, never a
    /// panic or a misread id.
    pub fn seek(&mut self, mark: DecodeMark) -> Result<(), RecordError> {
        let end = self.next_tx_id.wrapping_add(u64::from(self.remaining));
        let Some(first) = end.checked_sub(u64::from(self.count)) else {
            return Err(self.fail(RecordError::Truncated {
                tx_id: mark.tx_id,
                offset: mark.pos,
            }));
        };
        if mark.tx_id < first || mark.tx_id > end || mark.pos > self.payload.len() {
            return Err(self.fail(RecordError::Truncated {
                tx_id: mark.tx_id,
                offset: mark.pos,
            }));
        }
        self.remaining = u32::try_from(end - mark.tx_id).unwrap_or(0);
        self.next_tx_id = mark.tx_id;
        self.pos = mark.pos;
        self.previous_ns = mark.previous_ns;
        Ok(())
    }

    #[cold]
    fn fail(&mut self, error: RecordError) -> RecordError {
        self.failed = Some(error.clone());
        error
    }

    /// Decodes the record at `pos`: `(timestamp, user_ref, body)`.
    #[inline(always)]
    fn record(&mut self, tx_id: TxId) -> Result<(u64, u64, Body), RecordError> {
        let tag_offset = self.pos;
        let tag = self.byte(tx_id)?;
        if tag & self.reserved != 0
            || (tag & TAG_EFFECTS != 0 && tag & SHAPE_MASK == SHAPE_REJECTED)
            || (tag & TAG_LINKED != 0 && tag & TAG_EFFECTS == 0)
        {
            return Err(RecordError::ReservedBits {
                tx_id,
                offset: tag_offset,
                tag,
            });
        }
        let mut timestamp_ns = self.previous_ns;
        if tag & TAG_TIMESTAMP != 0 {
            let offset = self.pos;
            let delta = self.varint(tx_id)?;
            if delta == 0 {
                return Err(non_canonical(tx_id, offset, "timestamp delta"));
            }
            timestamp_ns = timestamp_ns
                .checked_add(delta)
                .ok_or(RecordError::TimestampOverflow { tx_id, offset })?;
        }
        let mut user_ref = 0;
        if tag & TAG_USER_REF != 0 {
            let offset = self.pos;
            user_ref = self.varint(tx_id)?;
            if user_ref == 0 {
                return Err(non_canonical(tx_id, offset, "user_ref"));
            }
        }
        let body = match tag & SHAPE_MASK {
            SHAPE_REJECTED => Body::Rejected(self.fail_reason(tx_id)?),
            SHAPE_PAIR => self.pair(tx_id)?,
            SHAPE_LIST => {
                self.list(tx_id)?;
                Body::List
            }
            _ => {
                debug_assert_eq!(tag & SHAPE_MASK, SHAPE_EMPTY);
                Body::Empty
            }
        };
        self.effects.clear();
        self.effect_links.clear();
        if tag & TAG_EFFECTS != 0 {
            self.effects_block(tx_id, tag & TAG_LINKED != 0)?;
        }
        Ok((timestamp_ns, user_ref, body))
    }

    /// The effects block after a committed record's body (version 2), each effect
    /// followed by its accounts' links when the record is `linked`.
    #[cold]
    fn effects_block(&mut self, tx_id: TxId, linked: bool) -> Result<(), RecordError> {
        let offset = self.pos;
        let count = self.varint(tx_id)?;
        if count == 0 || count > RECORD_EFFECTS_MAX as u64 {
            return Err(RecordError::BadEffectCount {
                tx_id,
                offset,
                count,
            });
        }
        for _ in 0..count {
            let offset = self.pos;
            let effect = match self.byte(tx_id)? {
                EFFECT_CONFIGURED => self.configured(tx_id)?,
                EFFECT_HOLD_OPENED => self.hold_opened(tx_id)?,
                EFFECT_HOLD_POSTED => Effect::HoldPosted {
                    hold_id: self.hold_link(tx_id)?,
                    amount: self.amount(tx_id)?,
                },
                EFFECT_HOLD_VOIDED => Effect::HoldVoided {
                    hold_id: self.hold_link(tx_id)?,
                },
                EFFECT_HOLD_EXPIRED => Effect::HoldExpired {
                    hold_id: self.hold_link(tx_id)?,
                },
                EFFECT_REVERSED => Effect::Reversed {
                    tx_id: self.earlier(tx_id, "the original is not an earlier transaction")?,
                },
                kind => {
                    return Err(RecordError::UnknownEffect {
                        tx_id,
                        offset,
                        kind,
                    });
                }
            };
            if linked {
                self.links_of(tx_id, &effect)?;
            }
            self.effects.push(effect);
        }
        if linked && self.effect_links.is_empty() {
            // Linking no account is the unlinked record's one encoding.
            return Err(non_canonical(
                tx_id,
                offset,
                "linked effects without an account",
            ));
        }
        Ok(())
    }

    /// A linked record's links after `effect`: a configuration's account's, a hold's
    /// `from`'s and `to`'s (a void or an expiry names them first).
    fn links_of(&mut self, tx_id: TxId, effect: &Effect) -> Result<(), RecordError> {
        let accounts = match *effect {
            Effect::Configured { account, .. } => [Some(account), None],
            Effect::HoldOpened { from, to, .. } => [Some(from), Some(to)],
            Effect::HoldVoided { .. } | Effect::HoldExpired { .. } => {
                let offset = self.pos;
                let (from, to) = (self.account(tx_id)?, self.account(tx_id)?);
                if from == to {
                    return Err(RecordError::InvalidEffect {
                        tx_id,
                        offset,
                        reason: "a hold between an account and itself",
                    });
                }
                [Some(from), Some(to)]
            }
            Effect::HoldPosted { .. } | Effect::Reversed { .. } => [None, None],
        };
        for account_id in accounts.into_iter().flatten() {
            let prev_tx_id = self.link(tx_id)?;
            self.effect_links.push(AccountLink {
                account_id,
                prev_tx_id,
            });
        }
        Ok(())
    }

    fn hold_opened(&mut self, tx_id: TxId) -> Result<Effect, RecordError> {
        let offset = self.pos;
        let from = self.account(tx_id)?;
        let to = self.account(tx_id)?;
        if from == to {
            return Err(RecordError::InvalidEffect {
                tx_id,
                offset,
                reason: "a hold between an account and itself",
            });
        }
        Ok(Effect::HoldOpened {
            from,
            to,
            amount: self.amount(tx_id)?,
            expires_at_ns: self.varint(tx_id)?,
        })
    }

    /// A hold named by its distance back: an earlier transaction (at least 1).
    fn hold_link(&mut self, tx_id: TxId) -> Result<TxId, RecordError> {
        self.earlier(tx_id, "the hold is not an earlier transaction")
    }

    /// A transaction named by its distance back: an earlier one (at least 1).
    fn earlier(&mut self, tx_id: TxId, reason: &'static str) -> Result<TxId, RecordError> {
        let offset = self.pos;
        let distance = self.varint(tx_id)?;
        match tx_id.checked_sub(distance) {
            Some(earlier) if distance >= 1 && earlier >= 1 => Ok(earlier),
            _ => Err(RecordError::InvalidEffect {
                tx_id,
                offset,
                reason,
            }),
        }
    }

    fn configured(&mut self, tx_id: TxId) -> Result<Effect, RecordError> {
        let offset = self.pos;
        let invalid = |reason| RecordError::InvalidEffect {
            tx_id,
            offset,
            reason,
        };
        let account = self.account(tx_id)?;
        if account == SYSTEM_ACCOUNT {
            return Err(invalid("the system account cannot be configured"));
        }
        let currency = u32::try_from(self.varint(tx_id)?).map_err(|_| invalid("currency"))?;
        let flags = u32::try_from(self.varint(tx_id)?).map_err(|_| invalid("flags"))?;
        let overdraft_limit = self.varint(tx_id)?;
        if overdraft_limit > AMOUNT_MAX {
            return Err(invalid("overdraft limit above i64::MAX"));
        }
        let presence = self.byte(tx_id)?;
        if presence & !(CONFIGURED_HAS_MAX | CONFIGURED_HAS_PARENT) != 0 {
            return Err(invalid("presence byte"));
        }
        let max_balance = match presence & CONFIGURED_HAS_MAX {
            0 => None,
            _ => Some(varint::unzigzag(self.varint(tx_id)?)),
        };
        let parent = match presence & CONFIGURED_HAS_PARENT {
            0 => 0,
            _ => {
                let parent = self.account(tx_id)?;
                if parent == SYSTEM_ACCOUNT || parent == account {
                    return Err(invalid("the parent is the system account or the account"));
                }
                parent
            }
        };
        Ok(Effect::Configured {
            account,
            config: AccountConfig {
                currency,
                flags,
                overdraft_limit,
                max_balance,
                parent,
            },
        })
    }

    fn fail_reason(&mut self, tx_id: TxId) -> Result<FailReason, RecordError> {
        let offset = self.pos;
        let code = self.byte(tx_id)?;
        if code == FAIL_CODE_DUPLICATE {
            let offset = self.pos;
            let distance = self.varint(tx_id)?;
            if distance == 0 || distance > tx_id {
                return Err(RecordError::InvalidDuplicate {
                    tx_id,
                    offset,
                    distance,
                });
            }
            return Ok(FailReason::Duplicate {
                original_tx_id: tx_id - distance,
            });
        }
        FailReason::from_code(code, 0)
            .filter(|_| code <= self.fail_code_max || code >= crate::transaction::UserFailCode::MIN)
            .ok_or(RecordError::InvalidFailCode {
                tx_id,
                offset,
                code,
            })
    }

    #[inline(always)]
    fn pair(&mut self, tx_id: TxId) -> Result<Body, RecordError> {
        let credit_account = self.account(tx_id)?;
        let debit_account = self.account(tx_id)?;
        let amount = self.amount(tx_id)?;
        let credit_balance = varint::unzigzag(self.varint(tx_id)?);
        let debit_balance = varint::unzigzag(self.varint(tx_id)?);
        let credit_prev = self.link(tx_id)?;
        let debit_prev = self.link(tx_id)?;
        Ok(Body::Pair(
            [
                Entry {
                    account_id: credit_account,
                    amount,
                    kind: EntryKind::Credit,
                    balance_after: credit_balance,
                },
                Entry {
                    account_id: debit_account,
                    amount,
                    kind: EntryKind::Debit,
                    balance_after: debit_balance,
                },
            ],
            [credit_prev, debit_prev],
        ))
    }

    fn list(&mut self, tx_id: TxId) -> Result<(), RecordError> {
        let offset = self.pos;
        let count = self.varint(tx_id)?;
        if count == 0 || count > RECORD_ENTRIES_MAX as u64 {
            return Err(RecordError::BadEntryCount {
                tx_id,
                offset,
                count,
            });
        }
        let count = count as usize;
        self.entries.clear();
        // Reserve no more than the rest of the payload could hold: a forged count costs
        // at most a buffer proportional to the payload.
        let room = self.payload.len().saturating_sub(self.pos) / LIST_ENTRY_MIN;
        self.entries.reserve(count.min(room));
        self.prev_tx_ids.clear();
        self.prev_tx_ids.reserve(count.min(room));
        for _ in 0..count {
            let account_and_kind = self.varint(tx_id)?;
            let amount = self.amount(tx_id)?;
            let balance_after = varint::unzigzag(self.varint(tx_id)?);
            let prev = self.link(tx_id)?;
            self.prev_tx_ids.push(prev);
            self.entries.push(Entry {
                account_id: account_and_kind >> 1,
                amount,
                kind: if account_and_kind & 1 == 0 {
                    EntryKind::Credit
                } else {
                    EntryKind::Debit
                },
                balance_after,
            });
        }
        Ok(())
    }

    #[inline(always)]
    fn account(&mut self, tx_id: TxId) -> Result<u64, RecordError> {
        let offset = self.pos;
        let account_id = self.varint(tx_id)?;
        if account_id >= ACCOUNT_ID_LIMIT {
            return Err(RecordError::InvalidAccount {
                tx_id,
                offset,
                account_id,
            });
        }
        Ok(account_id)
    }

    /// A back-link: the distance to the account's previous transaction (0: none), as
    /// that transaction's id.
    #[inline(always)]
    fn link(&mut self, tx_id: TxId) -> Result<TxId, RecordError> {
        let offset = self.pos;
        let distance = self.varint(tx_id)?;
        if distance == 0 {
            return Ok(0);
        }
        match tx_id.checked_sub(distance) {
            Some(prev) if prev >= 1 => Ok(prev),
            _ => Err(RecordError::InvalidLink {
                tx_id,
                offset,
                distance,
            }),
        }
    }

    #[inline(always)]
    fn amount(&mut self, tx_id: TxId) -> Result<u64, RecordError> {
        let offset = self.pos;
        let amount = self.varint(tx_id)?;
        if amount == 0 || amount > AMOUNT_MAX {
            return Err(RecordError::InvalidAmount {
                tx_id,
                offset,
                amount,
            });
        }
        Ok(amount)
    }

    #[inline(always)]
    fn byte(&mut self, tx_id: TxId) -> Result<u8, RecordError> {
        match self.payload.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(RecordError::Truncated {
                tx_id,
                offset: self.pos,
            }),
        }
    }

    #[inline(always)]
    fn varint(&mut self, tx_id: TxId) -> Result<u64, RecordError> {
        let rest = self.payload.get(self.pos..).unwrap_or_default();
        match varint::get(rest) {
            Ok((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            Err(fault) => Err(varint_error(fault, tx_id, self.pos)),
        }
    }
}

/// Makes `buf` exactly `[a, b]`. Runs of transfers (the common case) overwrite the two
/// elements in place: a `clear` + `extend` was a call per record (~15% of replay).
#[inline(always)]
fn set_pair<T: Copy>(buf: &mut Vec<T>, a: T, b: T) {
    if let [x, y] = buf.as_mut_slice() {
        *x = a;
        *y = b;
    } else {
        buf.clear();
        buf.extend_from_slice(&[a, b]);
    }
}

#[cold]
fn varint_error(fault: VarintFault, tx_id: TxId, offset: usize) -> RecordError {
    match fault {
        VarintFault::Truncated => RecordError::Truncated { tx_id, offset },
        VarintFault::Overflow => RecordError::VarintOverflow { tx_id, offset },
        VarintFault::Overlong => RecordError::VarintOverlong { tx_id, offset },
    }
}

#[cold]
fn non_canonical(tx_id: TxId, offset: usize, field: &'static str) -> RecordError {
    RecordError::NonCanonical {
        tx_id,
        offset,
        field,
    }
}
