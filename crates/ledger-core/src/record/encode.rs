//! Writing one records payload.

use super::DecodeMark;
use super::error::EncodeError;
use super::varint::{self, VARINT_BYTES_MAX};
use super::{
    ACCOUNT_ID_LIMIT, AccountLink, CONFIGURED_HAS_MAX, CONFIGURED_HAS_PARENT, EFFECT_CONFIGURED,
    EFFECT_HOLD_EXPIRED, EFFECT_HOLD_OPENED, EFFECT_HOLD_POSTED, EFFECT_HOLD_VOIDED,
    EFFECT_REVERSED, FAIL_CODE_DUPLICATE, RECORD_EFFECTS_MAX, RECORD_ENTRIES_MAX,
    RECORD_FORMAT_VERSION, RecordRef, SHAPE_EMPTY, SHAPE_LIST, SHAPE_PAIR, SHAPE_REJECTED,
    TAG_EFFECTS, TAG_LINKED, TAG_TIMESTAMP, TAG_USER_REF, effect_accounts,
};
use crate::transaction::{
    AMOUNT_MAX, Effect, Entry, EntryKind, FailReason, Outcome, SYSTEM_ACCOUNT, TxId,
};

/// Tag, timestamp delta and `user_ref`: the most a record's head takes.
const HEAD_BYTES_MAX: usize = 1 + 2 * VARINT_BYTES_MAX;
/// A Rejected record's body: fail code and duplicate distance.
const REJECTED_BODY_MAX: usize = 1 + VARINT_BYTES_MAX;
/// A Pair record's body: two accounts, amount, two balances, two back-links.
const PAIR_BODY_MAX: usize = 7 * VARINT_BYTES_MAX;
/// A List entry: account and kind, amount, balance, back-link.
const LIST_ENTRY_MAX: usize = 4 * VARINT_BYTES_MAX;
/// One effect: its kind and presence bytes, and at most six varints, then (in a linked
/// record) at most two accounts and two back-links.
const EFFECT_MAX: usize = 2 + 10 * VARINT_BYTES_MAX;

/// Writes one records payload (docs/record-format.md) into a caller's buffer.
///
/// [`FrameEncoder::new`] appends the version byte and the base timestamp; each
/// [`push`](FrameEncoder::push) appends one record, for transaction `first_seq +
/// records()`. The buffer is never cleared and nothing else is allocated, so a reused
/// buffer makes encoding allocation-free once it has grown.
#[derive(Clone, Debug)]
pub struct FrameEncoder {
    first_seq: TxId,
    previous_ns: u64,
    records: u32,
}

impl FrameEncoder {
    /// Starts a payload for the records of transactions `first_seq, first_seq + 1, ..`
    /// (the WAL frame's `first_seq`), appending its header to `buf`. `base_timestamp_ns`
    /// should be the first record's timestamp (then that record stores no delta).
    ///
    /// `first_seq` is needed because a Duplicate rejection stores the distance back to
    /// the original transaction, not its id.
    pub fn new(buf: &mut Vec<u8>, first_seq: TxId, base_timestamp_ns: u64) -> FrameEncoder {
        buf.reserve(1 + VARINT_BYTES_MAX);
        buf.push(RECORD_FORMAT_VERSION);
        varint::put(buf, base_timestamp_ns);
        FrameEncoder {
            first_seq,
            previous_ns: base_timestamp_ns,
            records: 0,
        }
    }

    /// How many records were pushed: the frame header's `record_count`.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Where the next pushed record will start in `buf`: a place a
    /// [`FrameDecoder`](super::FrameDecoder) can [`seek`](super::FrameDecoder::seek) to.
    pub fn mark(&self, buf: &[u8]) -> DecodeMark {
        DecodeMark {
            tx_id: self.next_tx_id(),
            pos: buf.len(),
            previous_ns: self.previous_ns,
        }
    }

    /// The id the next pushed record gets.
    pub fn next_tx_id(&self) -> TxId {
        self.first_seq.wrapping_add(u64::from(self.records))
    }

    /// Appends the record of transaction [`next_tx_id`](Self::next_tx_id). The encoder
    /// picks the shape: Rejected, Empty (committed, no entries), Pair (a Credit then a
    /// Debit of the same amount) or List.
    ///
    /// What the engine guarantees is debug-asserted and repaired in release builds: a
    /// timestamp below the previous record's is stored as the previous one (timestamps
    /// never decrease in a frame), and the entries of a rejection are dropped (a rejection
    /// changes nothing).
    ///
    /// # Panics
    ///
    /// On a record the format cannot hold (an amount of 0 or above `AMOUNT_MAX`, an
    /// account id at or above 2^63, more than 65535 entries, a Duplicate of a transaction
    /// that is not older, back-links that are not one per entry or not older, the
    /// `u32::MAX + 1`-th record), in every build: a WAL record that
    /// recovery would refuse, or read back differently, is worse than a stopped stage.
    /// [`try_push`](Self::try_push) returns these as errors instead.
    #[inline]
    pub fn push(&mut self, buf: &mut Vec<u8>, record: RecordRef<'_>) {
        debug_assert!(
            record.timestamp_ns >= self.previous_ns,
            "transaction {}: timestamp {} is below the previous {}",
            self.next_tx_id(),
            record.timestamp_ns,
            self.previous_ns
        );
        debug_assert!(
            record.outcome.is_committed() || record.entries.is_empty(),
            "transaction {}: a rejection with {} entries",
            self.next_tx_id(),
            record.entries.len()
        );
        debug_assert!(
            record.outcome.is_committed() || record.effects.is_empty(),
            "transaction {}: a rejection with {} effects",
            self.next_tx_id(),
            record.effects.len()
        );
        let committed = record.outcome.is_committed();
        let record = RecordRef {
            timestamp_ns: record.timestamp_ns.max(self.previous_ns),
            entries: if committed { record.entries } else { &[] },
            prev_tx_ids: if committed { record.prev_tx_ids } else { &[] },
            effects: if committed { record.effects } else { &[] },
            effect_links: if committed { record.effect_links } else { &[] },
            ..record
        };
        if let Err(error) = self.try_push(buf, record) {
            push_failed(error);
        }
    }

    /// [`push`](Self::push) that checks everything and repairs nothing: on an error
    /// nothing was appended and the encoder is unchanged.
    pub fn try_push(
        &mut self,
        buf: &mut Vec<u8>,
        record: RecordRef<'_>,
    ) -> Result<(), EncodeError> {
        let tx_id = self.next_tx_id();
        if self.records == u32::MAX
            || self
                .first_seq
                .checked_add(u64::from(self.records) + 1)
                .is_none()
        {
            return Err(EncodeError::FrameFull {
                first_seq: self.first_seq,
                records: self.records,
            });
        }
        let Some(delta) = record.timestamp_ns.checked_sub(self.previous_ns) else {
            return Err(EncodeError::TimestampDecreasing {
                tx_id,
                timestamp_ns: record.timestamp_ns,
                previous_ns: self.previous_ns,
            });
        };
        let user_ref = record.user_ref;
        if record.outcome.is_committed()
            && (record.prev_tx_ids.len() != record.entries.len()
                || record
                    .prev_tx_ids
                    .iter()
                    .any(|&prev| prev != 0 && prev >= tx_id))
        {
            return Err(EncodeError::InvalidLinks {
                tx_id,
                entries: record.entries.len(),
                links: record.prev_tx_ids.len(),
            });
        }
        let effects = match record.outcome {
            Outcome::Rejected(_) if !record.effects.is_empty() => {
                return Err(EncodeError::RejectedWithEffects {
                    tx_id,
                    effects: record.effects.len(),
                });
            }
            _ => check_effects(tx_id, record.effects)?,
        };
        check_effect_links(tx_id, record)?;
        let effects_tag = match (effects, record.effect_links) {
            (0, _) => 0,
            (_, []) => TAG_EFFECTS,
            _ => TAG_EFFECTS | TAG_LINKED,
        };
        let back = |index: usize| match record.prev_tx_ids.get(index) {
            Some(&prev) if prev != 0 => tx_id - prev,
            _ => 0,
        };
        match record.outcome {
            Outcome::Rejected(reason) => {
                if !record.entries.is_empty() {
                    return Err(EncodeError::RejectedWithEntries {
                        tx_id,
                        entries: record.entries.len(),
                    });
                }
                let code = reason.code();
                let distance = match reason {
                    FailReason::Duplicate { original_tx_id } if original_tx_id < tx_id => {
                        Some(tx_id - original_tx_id)
                    }
                    FailReason::Duplicate { original_tx_id } => {
                        return Err(EncodeError::InvalidDuplicate {
                            tx_id,
                            original_tx_id,
                        });
                    }
                    _ => None,
                };
                debug_assert_eq!(distance.is_some(), code == FAIL_CODE_DUPLICATE);
                buf.reserve(HEAD_BYTES_MAX + REJECTED_BODY_MAX);
                put_head(buf, SHAPE_REJECTED, delta, user_ref);
                buf.push(code);
                if let Some(distance) = distance {
                    varint::put(buf, distance);
                }
            }
            Outcome::Committed => match record.entries {
                [] => {
                    buf.reserve(HEAD_BYTES_MAX);
                    put_head(buf, SHAPE_EMPTY | effects_tag, delta, user_ref);
                }
                [credit, debit]
                    if credit.kind == EntryKind::Credit
                        && debit.kind == EntryKind::Debit
                        && credit.amount == debit.amount =>
                {
                    check_entry(tx_id, 0, credit)?;
                    check_entry(tx_id, 1, debit)?;
                    buf.reserve(HEAD_BYTES_MAX + PAIR_BODY_MAX);
                    put_head(buf, SHAPE_PAIR | effects_tag, delta, user_ref);
                    varint::put(buf, credit.account_id);
                    varint::put(buf, debit.account_id);
                    varint::put(buf, credit.amount);
                    varint::put(buf, varint::zigzag(credit.balance_after));
                    varint::put(buf, varint::zigzag(debit.balance_after));
                    varint::put(buf, back(0));
                    varint::put(buf, back(1));
                }
                entries => {
                    if entries.len() > RECORD_ENTRIES_MAX {
                        return Err(EncodeError::TooManyEntries {
                            tx_id,
                            count: entries.len(),
                        });
                    }
                    // Checked first, so that nothing is written for a bad record.
                    for (index, entry) in entries.iter().enumerate() {
                        check_entry(tx_id, index, entry)?;
                    }
                    buf.reserve(HEAD_BYTES_MAX + 3 + LIST_ENTRY_MAX * entries.len());
                    put_head(buf, SHAPE_LIST | effects_tag, delta, user_ref);
                    varint::put(buf, entries.len() as u64);
                    for (index, entry) in entries.iter().enumerate() {
                        varint::put(buf, entry.account_id << 1 | entry.kind as u64);
                        varint::put(buf, entry.amount);
                        varint::put(buf, varint::zigzag(entry.balance_after));
                        varint::put(buf, back(index));
                    }
                }
            },
        }
        if effects != 0 {
            put_effects(buf, tx_id, record.effects, record.effect_links);
        }
        self.previous_ns = record.timestamp_ns;
        self.records += 1;
        Ok(())
    }
}

/// Checks that the format can hold `effects` (before anything is written); returns
/// their count.
fn check_effects(tx_id: TxId, effects: &[Effect]) -> Result<usize, EncodeError> {
    if effects.len() > RECORD_EFFECTS_MAX {
        return Err(EncodeError::TooManyEffects {
            tx_id,
            count: effects.len(),
        });
    }
    for (index, effect) in effects.iter().enumerate() {
        let invalid = |reason| EncodeError::InvalidEffect {
            tx_id,
            index,
            reason,
        };
        match *effect {
            Effect::Configured { account, config } => {
                if account == SYSTEM_ACCOUNT || account >= ACCOUNT_ID_LIMIT {
                    return Err(invalid(
                        "the account is the system account or not below 2^63",
                    ));
                }
                if config.overdraft_limit > AMOUNT_MAX {
                    return Err(invalid("the overdraft limit is above i64::MAX"));
                }
                if config.parent == account || config.parent >= ACCOUNT_ID_LIMIT {
                    return Err(invalid("the parent is the account or not below 2^63"));
                }
            }
            Effect::HoldOpened {
                from, to, amount, ..
            } => {
                if from >= ACCOUNT_ID_LIMIT || to >= ACCOUNT_ID_LIMIT || from == to {
                    return Err(invalid("the accounts are equal or not below 2^63"));
                }
                if amount == 0 || amount > AMOUNT_MAX {
                    return Err(invalid("the amount is not in 1..=i64::MAX"));
                }
            }
            Effect::HoldPosted { hold_id, amount } => {
                if hold_id == 0 || hold_id >= tx_id {
                    return Err(invalid("the hold is not an earlier transaction"));
                }
                if amount == 0 || amount > AMOUNT_MAX {
                    return Err(invalid("the amount is not in 1..=i64::MAX"));
                }
            }
            Effect::HoldVoided { hold_id } | Effect::HoldExpired { hold_id } => {
                if hold_id == 0 || hold_id >= tx_id {
                    return Err(invalid("the hold is not an earlier transaction"));
                }
            }
            Effect::Reversed { tx_id: original } => {
                if original == 0 || original >= tx_id {
                    return Err(invalid("the original is not an earlier transaction"));
                }
            }
        }
    }
    Ok(effects.len())
}

/// Checks a record's effect links (before anything is written): none (a record as
/// written before links), or one per account each effect touches ([`effect_accounts`]),
/// naming the accounts the effects name, each older than the transaction.
fn check_effect_links(tx_id: TxId, record: RecordRef<'_>) -> Result<(), EncodeError> {
    let invalid = |reason| EncodeError::InvalidEffectLinks { tx_id, reason };
    let mut rest = record.effect_links;
    if rest.is_empty() {
        return Ok(());
    }
    for effect in record.effects {
        let Some((mine, after)) = rest.split_at_checked(effect_accounts(effect)) else {
            return Err(invalid("not one per account the effects touch"));
        };
        rest = after;
        if mine.iter().any(|l| {
            l.account_id >= ACCOUNT_ID_LIMIT || (l.prev_tx_id != 0 && l.prev_tx_id >= tx_id)
        }) {
            return Err(invalid("an account not below 2^63 or a link not older"));
        }
        let named = match (*effect, mine) {
            (Effect::Configured { account, .. }, [link]) => link.account_id == account,
            (Effect::HoldOpened { from, to, .. }, [a, b]) => {
                (a.account_id, b.account_id) == (from, to)
            }
            (_, [a, b]) => a.account_id != b.account_id,
            _ => true,
        };
        if !named {
            return Err(invalid("an account the effect does not name"));
        }
    }
    match rest {
        [] => Ok(()),
        _ => Err(invalid("not one per account the effects touch")),
    }
}

/// The effects block of transaction `tx_id`: count, then each effect
/// (docs/record-format.md, "Effects"). A hold is named by its distance back. In a
/// linked record (`links` not empty) each effect is followed by its accounts' back-links,
/// a void's and an expiry's by their accounts first.
fn put_effects(buf: &mut Vec<u8>, tx_id: TxId, effects: &[Effect], links: &[AccountLink]) {
    buf.reserve(VARINT_BYTES_MAX + EFFECT_MAX * effects.len());
    varint::put(buf, effects.len() as u64);
    let mut links = links;
    for effect in effects {
        put_effect(buf, tx_id, effect);
        if links.is_empty() {
            continue;
        }
        let (mine, rest) = links.split_at(effect_accounts(effect));
        links = rest;
        if matches!(
            effect,
            Effect::HoldVoided { .. } | Effect::HoldExpired { .. }
        ) {
            for link in mine {
                varint::put(buf, link.account_id);
            }
        }
        for link in mine {
            varint::put(buf, back_link(tx_id, link.prev_tx_id));
        }
    }
}

/// A back-link as stored: the distance to the previous transaction, 0 for none.
fn back_link(tx_id: TxId, prev: TxId) -> u64 {
    if prev == 0 { 0 } else { tx_id - prev }
}

/// One effect's kind and fields.
fn put_effect(buf: &mut Vec<u8>, tx_id: TxId, effect: &Effect) {
    match *effect {
        Effect::HoldOpened {
            from,
            to,
            amount,
            expires_at_ns,
        } => {
            buf.push(EFFECT_HOLD_OPENED);
            varint::put(buf, from);
            varint::put(buf, to);
            varint::put(buf, amount);
            varint::put(buf, expires_at_ns);
        }
        Effect::HoldPosted { hold_id, amount } => {
            buf.push(EFFECT_HOLD_POSTED);
            varint::put(buf, tx_id - hold_id);
            varint::put(buf, amount);
        }
        Effect::HoldVoided { hold_id } => {
            buf.push(EFFECT_HOLD_VOIDED);
            varint::put(buf, tx_id - hold_id);
        }
        Effect::HoldExpired { hold_id } => {
            buf.push(EFFECT_HOLD_EXPIRED);
            varint::put(buf, tx_id - hold_id);
        }
        Effect::Reversed { tx_id: original } => {
            buf.push(EFFECT_REVERSED);
            varint::put(buf, tx_id - original);
        }
        Effect::Configured { account, config } => {
            buf.push(EFFECT_CONFIGURED);
            varint::put(buf, account);
            varint::put(buf, u64::from(config.currency));
            varint::put(buf, u64::from(config.flags));
            varint::put(buf, config.overdraft_limit);
            let has_max = config.max_balance.map_or(0, |_| CONFIGURED_HAS_MAX);
            let has_parent = if config.parent != 0 {
                CONFIGURED_HAS_PARENT
            } else {
                0
            };
            buf.push(has_max | has_parent);
            if let Some(max) = config.max_balance {
                varint::put(buf, varint::zigzag(max));
            }
            if config.parent != 0 {
                varint::put(buf, config.parent);
            }
        }
    }
}

/// Tag byte (`shape` and the effects bit), then the timestamp delta and `user_ref` when
/// they are not zero.
#[inline(always)]
fn put_head(buf: &mut Vec<u8>, shape: u8, delta: u64, user_ref: u64) {
    let tag = shape
        | if delta != 0 { TAG_TIMESTAMP } else { 0 }
        | if user_ref != 0 { TAG_USER_REF } else { 0 };
    buf.push(tag);
    if delta != 0 {
        varint::put(buf, delta);
    }
    if user_ref != 0 {
        varint::put(buf, user_ref);
    }
}

#[inline(always)]
fn check_entry(tx_id: TxId, index: usize, entry: &Entry) -> Result<(), EncodeError> {
    if entry.amount == 0 || entry.amount > AMOUNT_MAX {
        return Err(EncodeError::InvalidAmount {
            tx_id,
            index,
            amount: entry.amount,
        });
    }
    if entry.account_id >= ACCOUNT_ID_LIMIT {
        return Err(EncodeError::InvalidAccount {
            tx_id,
            index,
            account_id: entry.account_id,
        });
    }
    Ok(())
}

#[cold]
#[inline(never)]
#[track_caller]
fn push_failed(error: EncodeError) -> ! {
    panic!("record encoder: {error}")
}
