//! A change-stream `TransactionBatch` written straight into its protobuf bytes from the
//! engine's transactions, without building the `pb` messages first (a `Vec` per entry
//! list and prost's nested length passes): the change stream's main cost per
//! transaction. Decodes to exactly what `convert::transaction` would have sent; the
//! tests below check it against prost's own encoding, effects included.

use bytes::Bytes;
use ledger_core::ledger::Transaction;
use ledger_core::transaction::Entry;
use prost::Message as _;
use prost::encoding::{encode_varint, encoded_len_varint};

use crate::convert;

/// Wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;

/// A batch being written: its transactions (field 1), then `next_tx_id` (field 2).
#[derive(Debug, Default)]
pub(crate) struct BatchWriter {
    buf: Vec<u8>,
    /// Transactions pushed.
    len: usize,
}

impl BatchWriter {
    /// Appends `tx` as the batch's next `transactions` element.
    pub(crate) fn push(&mut self, tx: &Transaction) {
        let len = transaction_len(tx);
        key(&mut self.buf, 1, LEN);
        encode_varint(len as u64, &mut self.buf);
        transaction(&mut self.buf, tx, len);
        self.len += 1;
    }

    /// Whether no transaction was pushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch's bytes, with `next_tx_id`.
    pub(crate) fn finish(mut self, next_tx_id: u64) -> Bytes {
        uint(&mut self.buf, 2, next_tx_id);
        self.buf.into()
    }
}

/// `tx` alone, as a `GetTransactionResponse` message (the sink's payload).
pub(crate) fn transaction_message(tx: &Transaction) -> Bytes {
    let len = transaction_len(tx);
    let mut buf = Vec::with_capacity(len);
    transaction(&mut buf, tx, len);
    buf.into()
}

/// `tx`'s `GetTransactionResponse` fields: `len` bytes of them, as [`transaction_len`]
/// said (computed once by the caller, which wrote it ahead).
fn transaction(buf: &mut Vec<u8>, tx: &Transaction, len: usize) {
    let start = buf.len();
    uint(buf, 1, tx.tx_id);
    for e in &tx.entries {
        key(buf, 2, LEN);
        encode_varint(entry_len(e, tx.tx_id) as u64, buf);
        entry(buf, e, tx.tx_id);
    }
    for l in &tx.links {
        key(buf, 3, LEN);
        let kind = convert::link_kind(l.kind) as i32 as u64;
        encode_varint((uint_len(1, l.to_tx_id) + uint_len(2, kind)) as u64, buf);
        uint(buf, 1, l.to_tx_id);
        uint(buf, 2, kind);
    }
    uint(buf, 4, tx.timestamp_ns);
    uint(buf, 5, tx.user_ref);
    uint(buf, 6, u64::from(convert::outcome_code(tx.outcome)));
    for e in &tx.effects {
        // Rare beside entries: prost's own encoding of the one conversion.
        key(buf, 7, LEN);
        convert::effect(e)
            .encode_length_delimited(buf)
            .expect("a Vec grows");
    }
    assert_eq!(buf.len() - start, len, "the length written ahead");
}

/// A `GetTransactionResponse`'s length (`applied_tx_id` stays 0: a stream's transactions
/// carry no node index).
fn transaction_len(tx: &Transaction) -> usize {
    let entries: usize = tx
        .entries
        .iter()
        .map(|e| nested_len(entry_len(e, tx.tx_id)))
        .sum();
    let links: usize = tx
        .links
        .iter()
        .map(|l| {
            let kind = convert::link_kind(l.kind) as i32 as u64;
            nested_len(uint_len(1, l.to_tx_id) + uint_len(2, kind))
        })
        .sum();
    let effects: usize = tx
        .effects
        .iter()
        .map(|e| nested_len(convert::effect(e).encoded_len()))
        .sum();
    uint_len(1, tx.tx_id)
        + entries
        + links
        + uint_len(4, tx.timestamp_ns)
        + uint_len(5, tx.user_ref)
        + uint_len(6, u64::from(convert::outcome_code(tx.outcome)))
        + effects
}

/// A `TxEntryRecord`: the entry, its balance after, its transaction.
fn entry(buf: &mut Vec<u8>, e: &Entry, tx_id: u64) {
    uint(buf, 1, e.account_id);
    uint(buf, 2, e.amount);
    uint(buf, 3, convert::entry_kind(e.kind) as i32 as u64);
    // int64: two's complement as a varint (ten bytes when negative), as prost does.
    uint(buf, 4, e.balance_after as u64);
    uint(buf, 5, tx_id);
}

fn entry_len(e: &Entry, tx_id: u64) -> usize {
    uint_len(1, e.account_id)
        + uint_len(2, e.amount)
        + uint_len(3, convert::entry_kind(e.kind) as i32 as u64)
        + uint_len(4, e.balance_after as u64)
        + uint_len(5, tx_id)
}

/// A field's key: its number and wire type.
fn key(buf: &mut Vec<u8>, field: u64, wire_type: u64) {
    encode_varint(field << 3 | wire_type, buf);
}

/// A varint field, left out when 0 (proto3's default).
fn uint(buf: &mut Vec<u8>, field: u64, value: u64) {
    if value != 0 {
        key(buf, field, VARINT);
        encode_varint(value, buf);
    }
}

/// The length of [`uint`]'s output (fields here are below 16: a one-byte key).
fn uint_len(field: u64, value: u64) -> usize {
    debug_assert!(field < 16);
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value)
    }
}

/// A length-delimited field's whole length, from its content's (a one-byte key).
fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ledger_core::ledger::{LinkKind, TransactionLink};
    use ledger_core::transaction::{Effect, EntryKind, FailReason, Outcome};
    use proptest::prelude::*;

    use super::*;
    use crate::pb;

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (any::<u64>(), 1..=u64::MAX, any::<bool>(), any::<i64>()).prop_map(
            |(account_id, amount, debit, balance_after)| Entry {
                account_id,
                amount,
                kind: if debit {
                    EntryKind::Debit
                } else {
                    EntryKind::Credit
                },
                balance_after,
            },
        )
    }

    fn transaction_strategy() -> impl Strategy<Value = Transaction> {
        (
            1..=u64::MAX,
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(entry_strategy(), 0..6),
            prop::collection::vec((0..u64::MAX, 0..3u8), 0..3),
            prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..3),
        )
            .prop_map(
                |(tx_id, timestamp_ns, user_ref, rejected, entries, links, effects)| Transaction {
                    tx_id,
                    timestamp_ns,
                    user_ref,
                    outcome: if rejected {
                        Outcome::Rejected(FailReason::InsufficientFunds)
                    } else {
                        Outcome::Committed
                    },
                    entries,
                    links: links
                        .into_iter()
                        .map(|(to_tx_id, k)| TransactionLink {
                            to_tx_id,
                            kind: [
                                LinkKind::Duplicate,
                                LinkKind::Reversal,
                                LinkKind::ReversedBy,
                            ][usize::from(k)],
                        })
                        .collect(),
                    effects: effects
                        .into_iter()
                        .map(|(a, b, c)| match a % 3 {
                            0 => Effect::Reversed { tx_id: b },
                            1 => Effect::HoldVoided { hold_id: b },
                            _ => Effect::HoldPosted {
                                hold_id: b,
                                amount: c,
                            },
                        })
                        .collect(),
                },
            )
    }

    proptest! {
        /// The bytes decode to the batch `convert::transaction` makes, and are prost's
        /// own bytes for it, byte for byte.
        #[test]
        fn a_written_batch_is_what_prost_writes(
            transactions in prop::collection::vec(transaction_strategy(), 0..8),
            next_tx_id in any::<u64>(),
        ) {
            let mut writer = BatchWriter::default();
            for tx in &transactions {
                writer.push(tx);
            }
            prop_assert_eq!(writer.is_empty(), transactions.is_empty());
            let bytes = writer.finish(next_tx_id);
            let expected = pb::TransactionBatch {
                transactions: transactions.iter().map(convert::transaction).collect(),
                next_tx_id,
            };
            prop_assert_eq!(&pb::TransactionBatch::decode(bytes.clone()).unwrap(), &expected);
            prop_assert_eq!(bytes.to_vec(), expected.encode_to_vec());
            for tx in &transactions {
                prop_assert_eq!(
                    transaction_message(tx).to_vec(),
                    convert::transaction(tx).encode_to_vec()
                );
            }
        }
    }
}
