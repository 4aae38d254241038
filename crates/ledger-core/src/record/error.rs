//! What can be wrong with a records payload, or with a record asked to be encoded.

use crate::transaction::TxId;

/// Why a records payload could not be decoded.
///
/// Every variant names where: `offset` is the byte offset within the payload of the field
/// (or tag byte) that is wrong; `tx_id` is the transaction whose record holds it (the
/// frame's `first_seq` for the payload header).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Byte 0 is not a record format version this build reads.
    #[error("record format version {version} is unknown (this build reads versions 1 and 2)")]
    UnknownVersion { version: u8 },
    /// `first_seq + record_count` does not fit a u64.
    #[error(
        "a frame of {record_count} records from transaction {first_seq} overflows the id space"
    )]
    SequenceOverflow { first_seq: TxId, record_count: u32 },
    /// The payload ends inside the field that starts at `offset`.
    #[error("transaction {tx_id}: the payload ends inside the field at offset {offset}")]
    Truncated { tx_id: TxId, offset: usize },
    /// A varint longer than 10 bytes, or whose value does not fit a u64.
    #[error("transaction {tx_id}: varint at offset {offset} overflows a u64")]
    VarintOverflow { tx_id: TxId, offset: usize },
    /// A varint with a redundant trailing zero group (a shorter encoding exists).
    #[error("transaction {tx_id}: varint at offset {offset} is overlong")]
    VarintOverlong { tx_id: TxId, offset: usize },
    /// A tag byte with one of the bits 4-7 set (reserved for later format versions).
    #[error("transaction {tx_id}: tag {tag:#04x} at offset {offset} has reserved bits set")]
    ReservedBits { tx_id: TxId, offset: usize, tag: u8 },
    /// An optional field that is present but holds the value its absence means (a zero
    /// timestamp delta or a zero `user_ref`): the encoder never writes that.
    #[error("transaction {tx_id}: {field} at offset {offset} is present but zero")]
    NonCanonical {
        tx_id: TxId,
        offset: usize,
        field: &'static str,
    },
    /// The timestamp (base plus deltas) leaves the u64 range.
    #[error("transaction {tx_id}: timestamp delta at offset {offset} overflows a u64")]
    TimestampOverflow { tx_id: TxId, offset: usize },
    /// A rejection whose fail code is 0 or an unassigned standard code (9-127).
    #[error("transaction {tx_id}: fail code {code} at offset {offset} is not assigned")]
    InvalidFailCode {
        tx_id: TxId,
        offset: usize,
        code: u8,
    },
    /// A Duplicate whose distance back to the original is 0 or reaches below id 0.
    #[error(
        "transaction {tx_id}: duplicate distance {distance} at offset {offset} is not in 1..={tx_id}"
    )]
    InvalidDuplicate {
        tx_id: TxId,
        offset: usize,
        distance: u64,
    },
    /// A List record whose entry count is 0 or above [`RECORD_ENTRIES_MAX`](super::RECORD_ENTRIES_MAX).
    #[error("transaction {tx_id}: entry count {count} at offset {offset} is not in 1..=65535")]
    BadEntryCount {
        tx_id: TxId,
        offset: usize,
        count: u64,
    },
    /// An amount of 0 or above `AMOUNT_MAX` (`i64::MAX`).
    #[error("transaction {tx_id}: amount {amount} at offset {offset} is not in 1..=i64::MAX")]
    InvalidAmount {
        tx_id: TxId,
        offset: usize,
        amount: u64,
    },
    /// A Pair's account id at or above 2^63 (a List entry cannot hold one).
    #[error("transaction {tx_id}: account {account_id} at offset {offset} is not below 2^63")]
    InvalidAccount {
        tx_id: TxId,
        offset: usize,
        account_id: u64,
    },
    /// An entry's back-link reaches at or below transaction 0.
    #[error(
        "transaction {tx_id}: back-link {distance} at offset {offset} reaches below transaction 1"
    )]
    InvalidLink {
        tx_id: TxId,
        offset: usize,
        distance: u64,
    },
    /// Bytes after the last record.
    #[error("transaction {tx_id}: effect count {count} at offset {offset} is not in 1..=255")]
    BadEffectCount {
        tx_id: TxId,
        offset: usize,
        count: u64,
    },

    #[error("transaction {tx_id}: effect kind {kind} at offset {offset} is unknown")]
    UnknownEffect {
        tx_id: TxId,
        offset: usize,
        kind: u8,
    },

    #[error("transaction {tx_id}: the effect at offset {offset} is not valid: {reason}")]
    InvalidEffect {
        tx_id: TxId,
        offset: usize,
        reason: &'static str,
    },

    #[error("{bytes} bytes at offset {offset} follow the frame's last record")]
    TrailingBytes { offset: usize, bytes: usize },
}

/// Why [`FrameEncoder::try_push`](super::FrameEncoder::try_push) refused a record. Each is
/// a bug in the caller (the transactor never produces them); nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The timestamp is below the previous record's (or the frame's base).
    #[error("transaction {tx_id}: timestamp {timestamp_ns} is below the previous {previous_ns}")]
    TimestampDecreasing {
        tx_id: TxId,
        timestamp_ns: u64,
        previous_ns: u64,
    },
    /// A rejected transaction with entries.
    #[error("transaction {tx_id}: rejected, yet {entries} entries")]
    RejectedWithEntries { tx_id: TxId, entries: usize },

    #[error("transaction {tx_id}: rejected, yet {effects} effects")]
    RejectedWithEffects { tx_id: TxId, effects: usize },

    #[error("transaction {tx_id}: {count} effects, at most 255 fit a record")]
    TooManyEffects { tx_id: TxId, count: usize },

    #[error("transaction {tx_id}: effect {index} cannot be stored: {reason}")]
    InvalidEffect {
        tx_id: TxId,
        index: usize,
        reason: &'static str,
    },
    /// Effect links that do not match the effects (see
    /// [`RecordRef::effect_links`](super::RecordRef::effect_links)).
    #[error("transaction {tx_id}: effect links cannot be stored: {reason}")]
    InvalidEffectLinks { tx_id: TxId, reason: &'static str },
    /// A Duplicate whose original is not older than the transaction itself.
    #[error("transaction {tx_id}: duplicate of {original_tx_id}, which is not older")]
    InvalidDuplicate { tx_id: TxId, original_tx_id: TxId },
    /// More entries than [`RECORD_ENTRIES_MAX`](super::RECORD_ENTRIES_MAX).
    #[error("transaction {tx_id}: {count} entries, at most 65535 fit a record")]
    TooManyEntries { tx_id: TxId, count: usize },
    /// Entry `index` has an amount of 0 or above `AMOUNT_MAX`.
    #[error("transaction {tx_id}: entry {index} has amount {amount}, not in 1..=i64::MAX")]
    InvalidAmount {
        tx_id: TxId,
        index: usize,
        amount: u64,
    },
    /// The back-links do not match the entries: not one per entry, or one that is not
    /// older than the transaction.
    #[error("transaction {tx_id}: {links} back-links for {entries} entries, or one not older")]
    InvalidLinks {
        tx_id: TxId,
        entries: usize,
        links: usize,
    },
    /// Entry `index` has an account id at or above 2^63.
    #[error("transaction {tx_id}: entry {index} has account {account_id}, not below 2^63")]
    InvalidAccount {
        tx_id: TxId,
        index: usize,
        account_id: u64,
    },
    /// The frame already holds `u32::MAX` records, or the next id would overflow a u64.
    #[error("a frame from transaction {first_seq} cannot take a record after {records}")]
    FrameFull { first_seq: TxId, records: u32 },
}
