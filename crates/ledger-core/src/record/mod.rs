//! The WAL record codec (record format version 2; version 1 is read too): what a WAL frame's payload holds.
//!
//! `ledger-wal` stores opaque payloads; a records frame's header carries `first_seq` and
//! `record_count`. Its payload holds the results of transactions `first_seq ..
//! first_seq + record_count`, one record each, in order: timestamp, `user_ref`, outcome
//! and the entries a committed transaction produced, each with a back-link to the previous
//! transaction of its account. Transaction ids are implicit (`first_seq + index`).
//! Rejected transactions are recorded too (without entries).
//!
//! - [`FrameEncoder`] writes one payload into a caller's buffer (the WAL stage's hot path;
//!   no allocation beyond the buffer's growth).
//! - [`FrameDecoder`] reads one payload back, record by record, into one reused entry
//!   buffer (recovery's hot path). It never panics, whatever the bytes, and every error
//!   ([`RecordError`]) names the transaction id and the byte offset within the payload.
//!
//! `docs/record-format.md` at the repository root describes the layout byte by byte;
//! `tests/record_format.rs` checks its hex examples against `tests/fixtures/record-v1.bin`
//! and `tests/fixtures/record-v2.bin`.
//!
//! ```
//! use ledger_core::record::{FrameDecoder, FrameEncoder, RecordRef};
//! use ledger_core::transaction::{Entry, EntryKind, FailReason, Outcome};
//!
//! let deposit = [
//!     Entry { account_id: 0, amount: 500, kind: EntryKind::Credit, balance_after: -500 },
//!     Entry { account_id: 7, amount: 500, kind: EntryKind::Debit, balance_after: 500 },
//! ];
//! let mut buf = Vec::new();
//! // Transactions 10 and 11, both sequenced at t = 1000 ns.
//! let mut encoder = FrameEncoder::new(&mut buf, 10, 1_000);
//! // Account 0 was last touched by transaction 4, account 7 never before.
//! encoder.push(&mut buf, RecordRef {
//!     timestamp_ns: 1_000,
//!     user_ref: 0,
//!     outcome: Outcome::Committed,
//!     entries: &deposit,
//!     prev_tx_ids: &[4, 0],
//!     effects: &[],
//!     effect_links: &[],
//! });
//! encoder.push(&mut buf, RecordRef {
//!     timestamp_ns: 1_000,
//!     user_ref: 0,
//!     outcome: Outcome::Rejected(FailReason::InsufficientFunds),
//!     entries: &[],
//!     prev_tx_ids: &[],
//!     effects: &[],
//!     effect_links: &[],
//! });
//! assert_eq!(encoder.records(), 2);
//!
//! let mut decoder = FrameDecoder::new(&buf, 10, 2).unwrap();
//! let first = decoder.next_record().unwrap().unwrap();
//! assert_eq!((first.tx_id, first.entries), (10, &deposit[..]));
//! assert_eq!(first.prev_tx_ids, &[4, 0]);
//! let second = decoder.next_record().unwrap().unwrap();
//! assert_eq!(second.outcome, Outcome::Rejected(FailReason::InsufficientFunds));
//! assert!(decoder.next_record().unwrap().is_none());
//! ```

// The decoder reads untrusted bytes: no unwrap, no indexing that can panic.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod decode;
mod encode;
mod error;
mod varint;

pub use decode::{DecodeMark, DecodedRecord, FrameDecoder, RecordHead};
pub use encode::FrameEncoder;
pub use error::{EncodeError, RecordError};

use crate::transaction::{AccountId, Effect, Entry, Outcome, TxId};

/// The record format version this build writes, byte 0 of every records payload.
/// Version 1 payloads (no effects, fail codes up to 8) stay readable.
pub const RECORD_FORMAT_VERSION: u8 = 2;

/// The first record format: what ledgers wrote before accounts could be configured.
pub const RECORD_FORMAT_V1: u8 = 1;

/// The most effects one record can hold.
pub const RECORD_EFFECTS_MAX: usize = 255;

/// The most entries one record can hold (a List record's count is at most this).
pub const RECORD_ENTRIES_MAX: usize = 65_535;

/// Account ids the format can hold are below this (`2^63`): a List entry stores
/// `account_id << 1 | kind`.
pub const ACCOUNT_ID_LIMIT: u64 = 1 << 63;

/// One transaction's result, borrowed: what the WAL stage hands [`FrameEncoder::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Sequencer time; never decreases within a frame.
    pub timestamp_ns: u64,
    /// The caller's idempotency reference (0: none).
    pub user_ref: u64,
    pub outcome: Outcome,
    /// The entries of a committed transaction (possibly none); empty for a rejection.
    pub entries: &'a [Entry],
    /// One per entry: the previous transaction that touched the entry's account (0: none),
    /// so that an account's history is a chain through the log.
    pub prev_tx_ids: &'a [TxId],
    /// What a committed transaction changed besides balances; empty for a rejection.
    pub effects: &'a [Effect],
    /// The accounts `effects` touched without an entry, in effect order (see
    /// [`effect_accounts`]), each with its back-link: the history chains pass through
    /// configurations and holds too. Empty in records written before they did.
    pub effect_links: &'a [AccountLink],
}

/// An account a record's effects touched, with the account's previous transaction (0:
/// none): one step of the account's history chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountLink {
    pub account_id: AccountId,
    pub prev_tx_id: TxId,
}

/// How many accounts `effect` touches without an entry, each with a link in a linked
/// record: a configuration its account; a hold opened, voided or expired its `from` and
/// `to`. A post's and a reversal's accounts have entries.
pub fn effect_accounts(effect: &Effect) -> usize {
    match effect {
        Effect::Configured { .. } => 1,
        Effect::HoldOpened { .. } | Effect::HoldVoided { .. } | Effect::HoldExpired { .. } => 2,
        Effect::HoldPosted { .. } | Effect::Reversed { .. } => 0,
    }
}

// Tag byte layout (docs/record-format.md, "Tag byte").
const SHAPE_MASK: u8 = 0b0000_0011;
const SHAPE_REJECTED: u8 = 0;
const SHAPE_PAIR: u8 = 1;
const SHAPE_LIST: u8 = 2;
const SHAPE_EMPTY: u8 = 3;
const TAG_TIMESTAMP: u8 = 0b0000_0100;
const TAG_USER_REF: u8 = 0b0000_1000;
/// Version 2: an effects block follows the body.
const TAG_EFFECTS: u8 = 0b0001_0000;
/// Version 2, with `TAG_EFFECTS`: the effects carry their accounts' back-links.
const TAG_LINKED: u8 = 0b0010_0000;
const TAG_RESERVED: u8 = 0b1100_0000;
const TAG_RESERVED_V1: u8 = 0b1111_0000;

/// Effect kinds (version 2): the byte that starts each effect.
const EFFECT_CONFIGURED: u8 = 1;
const EFFECT_HOLD_OPENED: u8 = 2;
const EFFECT_HOLD_POSTED: u8 = 3;
const EFFECT_HOLD_VOIDED: u8 = 4;
const EFFECT_HOLD_EXPIRED: u8 = 5;
const EFFECT_REVERSED: u8 = 6;
/// A Configured effect's presence byte: a max_balance follows.
const CONFIGURED_HAS_MAX: u8 = 0b0000_0001;
/// A Configured effect's presence byte: a parent follows.
const CONFIGURED_HAS_PARENT: u8 = 0b0000_0010;

/// The highest fail code version 1 payloads may hold (codes 9-12 came with version 2).
const FAIL_CODE_MAX_V1: u8 = 8;

/// `FailReason::Duplicate`'s code: followed by the distance back to the original.
const FAIL_CODE_DUPLICATE: u8 = 7;
