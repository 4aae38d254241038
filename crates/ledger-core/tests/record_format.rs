//! The WAL record codec (format version 2, and version 1 read back; docs/record-format.md):
//! round trips, the two compatibility fixtures, the size figure, and every way a payload
//! can be refused.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use ledger_core::record::{
    ACCOUNT_ID_LIMIT, AccountLink, DecodedRecord, EncodeError, FrameDecoder, FrameEncoder,
    RECORD_EFFECTS_MAX, RECORD_ENTRIES_MAX, RECORD_FORMAT_V1, RECORD_FORMAT_VERSION, RecordError,
    RecordHead, RecordRef, effect_accounts,
};
use ledger_core::transaction::{
    AMOUNT_MAX, AccountConfig, Effect, Entry, EntryKind, FailReason, Outcome, TxId, UserFailCode,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// An owned record, for building frames in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    timestamp_ns: u64,
    user_ref: u64,
    outcome: Outcome,
    entries: Vec<Entry>,
    /// One back-link per entry (0: none).
    prev: Vec<TxId>,
    effects: Vec<Effect>,
    effect_links: Vec<AccountLink>,
}

impl Rec {
    fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            timestamp_ns: self.timestamp_ns,
            user_ref: self.user_ref,
            outcome: self.outcome,
            entries: &self.entries,
            prev_tx_ids: &self.prev,
            effects: &self.effects,
            effect_links: &self.effect_links,
        }
    }

    fn from_decoded(record: &DecodedRecord<'_>) -> Rec {
        Rec {
            timestamp_ns: record.timestamp_ns,
            user_ref: record.user_ref,
            outcome: record.outcome,
            entries: record.entries.to_vec(),
            prev: record.prev_tx_ids.to_vec(),
            effects: record.effects.to_vec(),
            effect_links: record.effect_links.to_vec(),
        }
    }

    fn with_effects(self, effects: Vec<Effect>) -> Rec {
        Rec { effects, ..self }
    }

    /// With these links for its effects' accounts, `(account, previous transaction)`.
    fn with_links(self, links: &[(u64, TxId)]) -> Rec {
        let effect_links = links
            .iter()
            .map(|&(account_id, prev_tx_id)| AccountLink {
                account_id,
                prev_tx_id,
            })
            .collect();
        Rec {
            effect_links,
            ..self
        }
    }
}

fn credit(account_id: u64, amount: u64, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind: EntryKind::Credit,
        balance_after,
    }
}

fn debit(account_id: u64, amount: u64, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind: EntryKind::Debit,
        balance_after,
    }
}

/// A committed record whose accounts have no earlier transaction.
fn committed(timestamp_ns: u64, user_ref: u64, entries: Vec<Entry>) -> Rec {
    let prev = vec![0; entries.len()];
    linked(timestamp_ns, user_ref, entries, prev)
}

/// A committed record with back-links.
fn linked(timestamp_ns: u64, user_ref: u64, entries: Vec<Entry>, prev: Vec<TxId>) -> Rec {
    Rec {
        timestamp_ns,
        user_ref,
        outcome: Outcome::Committed,
        entries,
        prev,
        effects: Vec::new(),
        effect_links: Vec::new(),
    }
}

fn rejected(timestamp_ns: u64, user_ref: u64, reason: FailReason) -> Rec {
    Rec {
        timestamp_ns,
        user_ref,
        outcome: Outcome::Rejected(reason),
        entries: Vec::new(),
        prev: Vec::new(),
        effects: Vec::new(),
        effect_links: Vec::new(),
    }
}

/// Encodes `records` as one payload whose base is the first record's timestamp.
fn encode(first_seq: TxId, records: &[Rec]) -> Vec<u8> {
    let base = records.first().map_or(0, |r| r.timestamp_ns);
    let mut buf = Vec::new();
    let mut encoder = FrameEncoder::new(&mut buf, first_seq, base);
    for record in records {
        encoder.push(&mut buf, record.as_ref());
    }
    assert_eq!(encoder.records() as usize, records.len());
    buf
}

/// Decodes a whole payload: every record, or the first error (with the records before it).
fn decode(
    payload: &[u8],
    first_seq: TxId,
    count: u32,
) -> (Vec<(TxId, Rec)>, Result<(), RecordError>) {
    let mut out = Vec::new();
    let mut decoder = match FrameDecoder::new(payload, first_seq, count) {
        Ok(decoder) => decoder,
        Err(error) => return (out, Err(error)),
    };
    loop {
        match decoder.next_record() {
            Ok(Some(record)) => out.push((record.tx_id, Rec::from_decoded(&record))),
            Ok(None) => return (out, Ok(())),
            Err(error) => return (out, Err(error)),
        }
    }
}

/// [`decode`] through `next_record_into` (entries only: records come back without their
/// back-links) or, `with_links`, `next_record_links_into` (entries and back-links
/// appended to two shared buffers, which must stay the same length).
fn decode_shared(
    payload: &[u8],
    first_seq: TxId,
    count: u32,
    with_links: bool,
) -> (Vec<(TxId, Rec)>, Result<(), RecordError>) {
    let mut out = Vec::new();
    let mut decoder = match FrameDecoder::new(payload, first_seq, count) {
        Ok(decoder) => decoder,
        Err(error) => return (out, Err(error)),
    };
    // Not empty to begin with: the calls append, they never clear.
    let mut shared = vec![credit(9, 9, 9)];
    let mut links = vec![7];
    loop {
        let before = shared.len();
        let result = if with_links {
            let result = decoder.next_record_links_into(&mut shared, &mut links);
            assert_eq!(shared.len(), links.len(), "one back-link per entry");
            result
        } else {
            decoder.next_record_into(&mut shared)
        };
        match result {
            Ok(Some(RecordHead {
                tx_id,
                timestamp_ns,
                user_ref,
                outcome,
            })) => out.push((
                tx_id,
                Rec {
                    timestamp_ns,
                    user_ref,
                    outcome,
                    entries: shared[before..].to_vec(),
                    prev: if with_links {
                        links[before..].to_vec()
                    } else {
                        Vec::new()
                    },
                    effects: decoder.effects().to_vec(),
                    effect_links: decoder.effect_links().to_vec(),
                },
            )),
            Ok(None) => return (out, Ok(())),
            Err(error) => {
                assert_eq!(shared.len(), before, "entries appended by a failed record");
                return (out, Err(error));
            }
        }
    }
}

fn decode_into(
    payload: &[u8],
    first_seq: TxId,
    count: u32,
) -> (Vec<(TxId, Rec)>, Result<(), RecordError>) {
    decode_shared(payload, first_seq, count, false)
}

fn decode_links_into(
    payload: &[u8],
    first_seq: TxId,
    count: u32,
) -> (Vec<(TxId, Rec)>, Result<(), RecordError>) {
    decode_shared(payload, first_seq, count, true)
}

/// `decode(..)` with the back-links dropped: what [`decode_into`] must return.
fn without_links(
    (records, end): (Vec<(TxId, Rec)>, Result<(), RecordError>),
) -> (Vec<(TxId, Rec)>, Result<(), RecordError>) {
    let records = records
        .into_iter()
        .map(|(tx_id, rec)| {
            (
                tx_id,
                Rec {
                    prev: Vec::new(),
                    ..rec
                },
            )
        })
        .collect();
    (records, end)
}

/// The first error decoding `payload` as `count` records from transaction 1.
fn decode_error(payload: &[u8], count: u32) -> RecordError {
    decode(payload, 1, count).1.unwrap_err()
}

/// A payload with base timestamp 0 (two bytes: version, base) followed by `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    [&[RECORD_FORMAT_VERSION, 0x00][..], body].concat()
}

/// [`frame`] in format version 1.
fn frame_v1(body: &[u8]) -> Vec<u8> {
    [&[RECORD_FORMAT_V1, 0x00][..], body].concat()
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Round trips

#[derive(Clone, Debug)]
enum OutcomeGen {
    Committed(Vec<Entry>),
    Rejected(FailReason),
    /// Resolved against the record's id: the original is `1 + seed % tx_id` back.
    Duplicate(u64),
}

#[derive(Clone, Debug)]
struct RecGen {
    delta: u64,
    user_ref: u64,
    outcome: OutcomeGen,
    /// Resolved against the record's id: each entry's back-link is in `0..tx_id`.
    link_seed: u64,
    /// Kept only for a committed record.
    effects: Vec<Effect>,
}

fn account_config() -> impl Strategy<Value = AccountConfig> {
    (
        any::<u32>(),
        any::<u32>(),
        prop_oneof![Just(0u64), Just(AMOUNT_MAX), 0..=AMOUNT_MAX],
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(Some),
            Just(Some(i64::MIN))
        ],
        prop_oneof![Just(0u64), 1..ACCOUNT_ID_LIMIT],
    )
        .prop_map(
            |(currency, flags, overdraft_limit, max_balance, parent)| AccountConfig {
                currency,
                flags,
                overdraft_limit,
                max_balance,
                parent,
            },
        )
}

/// An effect; a hold is named by its distance back from the record (resolved against
/// the record's id in `frame_gen`).
fn effect() -> impl Strategy<Value = Effect> {
    prop_oneof![
        (1..ACCOUNT_ID_LIMIT, account_config()).prop_map(|(account, config)| {
            // An account is never its own parent.
            let parent = if config.parent == account {
                0
            } else {
                config.parent
            };
            Effect::Configured {
                account,
                config: AccountConfig { parent, ..config },
            }
        }),
        any::<u64>().prop_map(|back| Effect::Reversed { tx_id: back }),
        (account(), account(), amount(), any::<u64>()).prop_map(
            |(from, to, amount, expires_at_ns)| {
                Effect::HoldOpened {
                    from,
                    to: if to == from { from ^ 1 } else { to },
                    amount,
                    expires_at_ns,
                }
            }
        ),
        (any::<u64>(), amount()).prop_map(|(back, amount)| Effect::HoldPosted {
            hold_id: back,
            amount
        }),
        any::<u64>().prop_map(|back| Effect::HoldVoided { hold_id: back }),
        any::<u64>().prop_map(|back| Effect::HoldExpired { hold_id: back }),
    ]
}

/// `effects` of record `tx_id` with every hold named by a seed turned into an earlier
/// transaction (none before transaction 2: those are dropped).
fn resolve_holds(tx_id: TxId, effects: Vec<Effect>) -> Vec<Effect> {
    let earlier = |seed: u64| 1 + seed % (tx_id - 1);
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::HoldPosted { .. }
            | Effect::HoldVoided { .. }
            | Effect::HoldExpired { .. }
            | Effect::Reversed { .. }
                if tx_id < 2 =>
            {
                None
            }
            Effect::HoldPosted { hold_id, amount } => Some(Effect::HoldPosted {
                hold_id: earlier(hold_id),
                amount,
            }),
            Effect::HoldVoided { hold_id } => Some(Effect::HoldVoided {
                hold_id: earlier(hold_id),
            }),
            Effect::HoldExpired { hold_id } => Some(Effect::HoldExpired {
                hold_id: earlier(hold_id),
            }),
            Effect::Reversed { tx_id: seed } => Some(Effect::Reversed {
                tx_id: earlier(seed),
            }),
            other => Some(other),
        })
        .collect()
}

/// Links for `effects`' accounts (record `tx_id`), or none (a record written before
/// effect links) when `seed` is even: a void's and an expiry's accounts are made up.
fn effect_links_for(tx_id: TxId, effects: &[Effect], seed: u64) -> Vec<(u64, TxId)> {
    if seed.is_multiple_of(2) {
        return Vec::new();
    }
    let prev = |k: usize| match tx_id {
        0 => 0,
        _ => seed.rotate_left(k as u32 * 5 % 64) % tx_id,
    };
    let mut links = Vec::new();
    for (k, effect) in effects.iter().enumerate() {
        let accounts = match *effect {
            Effect::Configured { account, .. } => vec![account],
            Effect::HoldOpened { from, to, .. } => vec![from, to],
            Effect::HoldVoided { .. } | Effect::HoldExpired { .. } => {
                let from = seed.rotate_left(k as u32 * 3 % 64) % ACCOUNT_ID_LIMIT;
                vec![from, from ^ 1]
            }
            _ => Vec::new(),
        };
        assert_eq!(accounts.len(), effect_accounts(effect));
        let first = links.len();
        links.extend(
            accounts
                .into_iter()
                .enumerate()
                .map(|(i, a)| (a, prev(first + i))),
        );
    }
    links
}

fn effects() -> impl Strategy<Value = Vec<Effect>> {
    prop_oneof![
        6 => Just(Vec::new()),
        2 => prop::collection::vec(effect(), 1..4),
    ]
}

fn account() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..16u64,
        0..(1u64 << 21),
        0..ACCOUNT_ID_LIMIT,
        Just(ACCOUNT_ID_LIMIT - 1),
    ]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1), Just(AMOUNT_MAX), 1..1000u64, 1..=AMOUNT_MAX]
}

fn balance() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        -1000..1000i64,
        any::<i64>()
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (account(), amount(), any::<bool>(), balance()).prop_map(|(account_id, amount, d, b)| Entry {
        account_id,
        amount,
        kind: if d {
            EntryKind::Debit
        } else {
            EntryKind::Credit
        },
        balance_after: b,
    })
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop_oneof![
        // Transfer-shaped: encoded as a Pair.
        4 => (account(), account(), amount(), balance(), balance())
            .prop_map(|(c, d, a, cb, db)| vec![credit(c, a, cb), debit(d, a, db)]),
        // Transfer to self: Empty.
        1 => Just(Vec::new()),
        // Anything else: a List (which may happen to be Pair-shaped, too).
        3 => prop::collection::vec(entry(), 1..6),
        1 => prop::collection::vec(entry(), 120..300),
    ]
}

fn fail_reason() -> impl Strategy<Value = FailReason> {
    prop_oneof![
        Just(FailReason::InsufficientFunds),
        Just(FailReason::AccountNotFound),
        Just(FailReason::ZeroSumViolation),
        Just(FailReason::EntryLimitExceeded),
        Just(FailReason::InvalidOperation),
        Just(FailReason::AccountLimitExceeded),
        Just(FailReason::BalanceOverflow),
        Just(FailReason::AccountFrozen),
        Just(FailReason::CurrencyMismatch),
        Just(FailReason::MaxBalanceExceeded),
        Just(FailReason::CurrencyFixed),
        Just(FailReason::HoldNotFound),
        Just(FailReason::HoldClosed),
        Just(FailReason::HoldExceeded),
        Just(FailReason::HoldExpired),
        (128..=255u8).prop_map(|c| FailReason::UserDefined(UserFailCode::new(c).unwrap())),
    ]
}

fn record_gen() -> impl Strategy<Value = RecGen> {
    let delta = prop_oneof![
        4 => Just(0u64),
        2 => 1..1000u64,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ];
    let user_ref = prop_oneof![Just(0u64), Just(u64::MAX), 1..100u64, any::<u64>()];
    let outcome = prop_oneof![
        5 => entries().prop_map(OutcomeGen::Committed),
        2 => fail_reason().prop_map(OutcomeGen::Rejected),
        1 => any::<u64>().prop_map(OutcomeGen::Duplicate),
    ];
    let link_seed = prop_oneof![Just(0u64), any::<u64>()];
    (delta, user_ref, outcome, link_seed, effects()).prop_map(
        |(delta, user_ref, outcome, link_seed, effects)| RecGen {
            delta,
            user_ref,
            outcome,
            link_seed,
            effects,
        },
    )
}

fn first_seq() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        1..1_000_000u64,
        Just(u64::MAX - 64),
        any::<u64>()
    ]
}

/// A frame: first sequence and records whose ids and timestamps fit.
fn frame_gen() -> impl Strategy<Value = (TxId, Vec<Rec>)> {
    (
        first_seq(),
        prop_oneof![Just(0u64), any::<u64>()],
        prop::collection::vec(record_gen(), 0..24),
    )
        .prop_map(|(first_seq, base, gens)| {
            let first_seq = first_seq.min(u64::MAX - gens.len() as u64);
            let mut timestamp = base;
            let records = gens
                .into_iter()
                .enumerate()
                .map(|(i, g)| {
                    let tx_id = first_seq + i as u64;
                    // The first record's delta is relative to the base, which is its own
                    // timestamp here; later ones move forward (saturating at u64::MAX).
                    if i > 0 {
                        timestamp = timestamp.saturating_add(g.delta);
                    }
                    let outcome = match g.outcome {
                        OutcomeGen::Committed(entries) => {
                            let prev = (0..entries.len() as u32)
                                .map(|k| match tx_id {
                                    0 => 0,
                                    _ => g.link_seed.rotate_left(7 * k) % tx_id,
                                })
                                .collect();
                            let effects = resolve_holds(tx_id, g.effects);
                            let links = effect_links_for(tx_id, &effects, g.link_seed);
                            return linked(timestamp, g.user_ref, entries, prev)
                                .with_effects(effects)
                                .with_links(&links);
                        }
                        OutcomeGen::Rejected(reason) => reason,
                        OutcomeGen::Duplicate(_) if tx_id == 0 => FailReason::InsufficientFunds,
                        OutcomeGen::Duplicate(seed) => FailReason::Duplicate {
                            original_tx_id: tx_id - (1 + seed % tx_id),
                        },
                    };
                    rejected(timestamp, g.user_ref, outcome)
                })
                .collect();
            (first_seq, records)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip((first_seq, records) in frame_gen()) {
        let payload = encode(first_seq, &records);
        let (decoded, end) = decode(&payload, first_seq, records.len() as u32);
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(decoded.len(), records.len());
        for (i, ((tx_id, got), want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(*tx_id, first_seq + i as u64);
            prop_assert_eq!(got, want);
        }
    }

    /// A mark the encoder took before a record, or the decoder stood at, lets a fresh
    /// decoder start there and read the same records as a full decode.
    #[test]
    fn seeking_to_a_mark_reads_the_same_records((first_seq, records) in frame_gen()) {
        let base = records.first().map_or(0, |r| r.timestamp_ns);
        let mut payload = Vec::new();
        let mut encoder = FrameEncoder::new(&mut payload, first_seq, base);
        let mut marks = Vec::new();
        for record in &records {
            marks.push(encoder.mark(&payload));
            encoder.push(&mut payload, record.as_ref());
        }
        let count = records.len() as u32;
        let mut walker = FrameDecoder::new(&payload, first_seq, count).unwrap();
        for (i, mark) in marks.iter().enumerate() {
            prop_assert_eq!(walker.mark(), *mark);
            walker.next_record().unwrap();
            let mut decoder = FrameDecoder::new(&payload, first_seq, count).unwrap();
            decoder.seek(*mark).unwrap();
            let mut rest = Vec::new();
            while let Some(record) = decoder.next_record().unwrap() {
                rest.push((record.tx_id, Rec::from_decoded(&record)));
            }
            prop_assert_eq!(rest.len(), records.len() - i);
            for (k, (tx_id, got)) in rest.iter().enumerate() {
                prop_assert_eq!(*tx_id, first_seq + (i + k) as u64);
                prop_assert_eq!(got, &records[i + k]);
            }
        }
        // A mark from outside the payload is an error, not a panic.
        if let Some(&first) = marks.first() {
            let mut decoder = FrameDecoder::new(&payload, first_seq, count).unwrap();
            let mut bad = first;
            bad.pos = payload.len() + 1;
            prop_assert!(decoder.seek(bad).is_err());
            bad = first;
            bad.tx_id = first_seq + u64::from(count) + 1;
            prop_assert!(decoder.seek(bad).is_err());
        }
    }

    #[test]
    fn every_truncation_is_an_error_after_the_same_records(
        (first_seq, records) in frame_gen(),
    ) {
        let payload = encode(first_seq, &records);
        let count = records.len() as u32;
        for cut in 0..payload.len() {
            let (decoded, end) = decode(&payload[..cut], first_seq, count);
            let error = end.expect_err("a truncated payload decoded");
            prop_assert!(matches!(error, RecordError::Truncated { .. }), "{:?}", error);
            prop_assert!(decoded.len() < records.len().max(1));
            for (i, (tx_id, got)) in decoded.iter().enumerate() {
                prop_assert_eq!(*tx_id, first_seq + i as u64);
                prop_assert_eq!(got, &records[i]);
            }
        }
    }

    #[test]
    fn a_wrong_record_count_is_an_error((first_seq, records) in frame_gen()) {
        let payload = encode(first_seq, &records);
        let count = records.len() as u32;
        if first_seq.checked_add(u64::from(count) + 1).is_some() {
            let (_, end) = decode(&payload, first_seq, count + 1);
            prop_assert!(matches!(end, Err(RecordError::Truncated { .. })), "{:?}", end);
        }
        if count > 0 {
            let (_, end) = decode(&payload, first_seq, count - 1);
            prop_assert!(matches!(end, Err(RecordError::TrailingBytes { .. })), "{:?}", end);
        }
    }

    #[test]
    fn decoding_into_a_shared_buffer_reads_the_same_records_and_errors(
        (first_seq, records) in frame_gen(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut payload = encode(first_seq, &records);
        for (index, mask) in flips {
            let i = index.index(payload.len());
            payload[i] ^= mask;
        }
        let count = records.len() as u32;
        prop_assert_eq!(
            decode_into(&payload, first_seq, count),
            without_links(decode(&payload, first_seq, count))
        );
        prop_assert_eq!(
            decode_links_into(&payload, first_seq, count),
            decode(&payload, first_seq, count)
        );
        let cut = cut.index(payload.len() + 1);
        prop_assert_eq!(
            decode_into(&payload[..cut], first_seq, count),
            without_links(decode(&payload[..cut], first_seq, count))
        );
        prop_assert_eq!(
            decode_links_into(&payload[..cut], first_seq, count),
            decode(&payload[..cut], first_seq, count)
        );
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        first_seq in first_seq(),
        count in 0..64u32,
        versioned in any::<bool>(),
    ) {
        let payload = if versioned { [&[RECORD_FORMAT_VERSION][..], &bytes].concat() } else { bytes };
        let _ = decode(&payload, first_seq, count);
    }

    #[test]
    fn damaged_frames_never_panic(
        (first_seq, records) in frame_gen(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let mut payload = encode(first_seq, &records);
        for (index, mask) in flips {
            let i = index.index(payload.len());
            payload[i] ^= mask;
        }
        let _ = decode(&payload, first_seq, records.len() as u32);
    }
}

#[test]
fn the_largest_list_round_trips() {
    let entries: Vec<Entry> = (0..RECORD_ENTRIES_MAX as u64)
        .map(|i| Entry {
            account_id: ACCOUNT_ID_LIMIT - 1 - i,
            amount: AMOUNT_MAX - i,
            kind: if i % 2 == 0 {
                EntryKind::Credit
            } else {
                EntryKind::Debit
            },
            balance_after: i64::MIN + i as i64,
        })
        .collect();
    let records = [committed(5, u64::MAX, entries)];
    let payload = encode(7, &records);
    let (decoded, end) = decode(&payload, 7, 1);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded, vec![(7, records[0].clone())]);
}

#[test]
fn a_decoder_can_be_reset_to_the_next_frame() {
    let a = encode(
        1,
        &[committed(10, 0, vec![credit(1, 5, -5), debit(2, 5, 5)])],
    );
    let b = encode(
        2,
        &[rejected(11, 3, FailReason::Duplicate { original_tx_id: 1 })],
    );
    let mut decoder = FrameDecoder::new(&a, 1, 1).unwrap();
    assert_eq!(decoder.next_record().unwrap().unwrap().entries.len(), 2);
    assert!(decoder.next_record().unwrap().is_none());
    let mut decoder = decoder.reset(&b, 2, 1).unwrap();
    assert_eq!(decoder.remaining(), 1);
    let record = decoder.next_record().unwrap().unwrap();
    assert_eq!(
        (record.tx_id, record.timestamp_ns, record.user_ref),
        (2, 11, 3)
    );
    assert_eq!(
        record.outcome,
        Outcome::Rejected(FailReason::Duplicate { original_tx_id: 1 })
    );
    assert!(record.entries.is_empty());
    assert!(decoder.next_record().unwrap().is_none());
    assert!(decoder.next_record().unwrap().is_none(), "stays at the end");
}

#[test]
fn the_encoder_appends_to_the_buffer_and_picks_the_shape() {
    let mut buf = b"keep".to_vec();
    let mut encoder = FrameEncoder::new(&mut buf, 1, 0);
    assert_eq!(&buf[..4], b"keep");
    let pair = [credit(1, 5, -5), debit(2, 5, 5)];
    let not_a_pair = [
        [debit(1, 5, 5), credit(2, 5, -5)],
        [credit(1, 5, -5), debit(2, 6, 6)],
    ];
    encoder.push(
        &mut buf,
        RecordRef {
            timestamp_ns: 0,
            user_ref: 0,
            outcome: Outcome::Committed,
            entries: &pair,
            prev_tx_ids: &[0, 0],
            effects: &[],
            effect_links: &[],
        },
    );
    assert_eq!(buf[6] & 0b11, 1, "Pair");
    for entries in &not_a_pair {
        let at = buf.len();
        encoder.push(
            &mut buf,
            RecordRef {
                timestamp_ns: 0,
                user_ref: 0,
                outcome: Outcome::Committed,
                entries,
                prev_tx_ids: &[1, 0],
                effects: &[],
                effect_links: &[],
            },
        );
        assert_eq!(buf[at] & 0b11, 2, "List");
    }
    let (decoded, end) = decode(&buf[4..], 1, 3);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded[1].1.entries, not_a_pair[0]);
    assert_eq!(decoded[2].1.entries, not_a_pair[1]);
}

// ---------------------------------------------------------------------------------------
// The fixture (docs/record-format.md, "Hex example")

const FIXTURE_FIRST_SEQ: TxId = 1;
/// 2023-11-14 22:13:20 UTC.
const FIXTURE_BASE_NS: u64 = 1_700_000_000_000_000_000;

/// Six transactions from an empty ledger: ids 1-6.
fn fixture_records() -> Vec<Rec> {
    let t = FIXTURE_BASE_NS;
    vec![
        // 1: deposit 1000 into account 1.
        committed(t, 0, vec![credit(0, 1000, -1000), debit(1, 1000, 1000)]),
        // 2: transfer 250 from 1 to 2, user_ref 42, 1.5 us later. Account 1 was last
        // touched by transaction 1, account 2 never.
        linked(
            t + 1500,
            42,
            vec![credit(1, 250, 750), debit(2, 250, 250)],
            vec![1, 0],
        ),
        // 3: transfer 10000 from 2 to 3: insufficient funds, same timestamp.
        rejected(t + 1500, 0, FailReason::InsufficientFunds),
        // 4: the retry of 2 (user_ref 42): a duplicate of transaction 2.
        rejected(t + 2500, 42, FailReason::Duplicate { original_tx_id: 2 }),
        // 5: composite, user_ref 7: 100 from 1, 90 to 2, a fee of 10 to account 9.
        linked(
            t + 2500,
            7,
            vec![credit(1, 100, 650), debit(2, 90, 340), debit(9, 10, 10)],
            vec![2, 2, 0],
        ),
        // 6: transfer from 2 to 2: committed, no entries.
        committed(t + 2600, 0, Vec::new()),
    ]
}

fn fixture_path(version: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/record-v{version}.bin"))
}

/// Version 2's fixture: a ledger with configured accounts (docs/record-format.md,
/// "Hex example, version 2"). Ids 1-5 from `base_ts`.
fn fixture_v2_records() -> Vec<Rec> {
    let t = FIXTURE_BASE_NS;
    let usd_with_overdraft = AccountConfig {
        currency: 840,
        flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
        overdraft_limit: 500,
        max_balance: None,
        parent: 0,
    };
    let capped_frozen = AccountConfig {
        currency: 840,
        flags: AccountConfig::FROZEN | AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
        overdraft_limit: 0,
        max_balance: Some(1000),
        parent: 0,
    };
    vec![
        // 1: configure account 1: currency 840, overdraft limit 500.
        committed(t, 0, Vec::new()).with_effects(vec![Effect::Configured {
            account: 1,
            config: usd_with_overdraft,
        }]),
        // 2: configure account 2, user_ref 5: currency 840, frozen, at most 1000.
        committed(t + 100, 5, Vec::new()).with_effects(vec![Effect::Configured {
            account: 2,
            config: capped_frozen,
        }]),
        // 3: withdraw 300 from account 1: it goes to -300, within its overdraft.
        committed(t + 100, 0, vec![credit(1, 300, -300), debit(0, 300, 300)]),
        // 4: transfer 10 from 1 to the frozen account 2: refused.
        rejected(t + 100, 0, FailReason::AccountFrozen),
        // 5: transfer 10 from 1 to account 3 (currency 0): refused.
        rejected(t + 200, 0, FailReason::CurrencyMismatch),
    ]
}

/// `RECORD_FIXTURE_WRITE=1 cargo test -p ledger-core --test record_format fixture` writes
/// version 2's fixture from today's encoder (only while the format is new). Otherwise
/// the committed file is compared, never rewritten. Version 1's never changes.
#[test]
fn the_fixtures_are_what_the_encoder_writes_and_the_decoder_reads() {
    // Version 1: read as it always was. Today's encoder writes the same records with
    // the same bytes but for the version.
    let records = fixture_records();
    let v1 = std::fs::read(fixture_path(1)).unwrap();
    let (decoded, end) = decode(&v1, FIXTURE_FIRST_SEQ, records.len() as u32);
    assert_eq!(end, Ok(()));
    let want: Vec<(TxId, Rec)> = (FIXTURE_FIRST_SEQ..).zip(records.clone()).collect();
    assert_eq!(decoded, want);
    let today = encode(FIXTURE_FIRST_SEQ, &records);
    assert_eq!((today[0], v1[0]), (RECORD_FORMAT_VERSION, RECORD_FORMAT_V1));
    assert_eq!(hex(&today[1..]), hex(&v1[1..]));

    check_written_fixture(&fixture_path(2), fixture_v2_records());
}

/// Today's encoder writes `records` as the fixture at `path`, byte for byte, and the
/// decoder reads them back from it. `RECORD_FIXTURE_WRITE=1` writes the fixture first
/// (once, while its format is new).
fn check_written_fixture(path: &std::path::Path, records: Vec<Rec>) {
    let payload = encode(FIXTURE_FIRST_SEQ, &records);
    if std::env::var_os("RECORD_FIXTURE_WRITE").is_some() {
        std::fs::write(path, &payload).unwrap();
        eprintln!("wrote {} ({} bytes)", path.display(), payload.len());
    }
    let fixture = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with RECORD_FIXTURE_WRITE=1, once, and commit it)",
            path.display()
        )
    });
    assert_eq!(fixture[0], RECORD_FORMAT_VERSION);
    assert_eq!(
        hex(&payload),
        hex(&fixture),
        "today's encoder differs from the fixture"
    );
    let (decoded, end) = decode(&fixture, FIXTURE_FIRST_SEQ, records.len() as u32);
    assert_eq!(end, Ok(()));
    let want: Vec<(TxId, Rec)> = (FIXTURE_FIRST_SEQ..).zip(records).collect();
    assert_eq!(decoded, want);
}

/// A HoldOpened effect, for the fixtures.
fn hold_opened(from: u64, to: u64, amount: u64, expires_at_ns: u64) -> Effect {
    Effect::HoldOpened {
        from,
        to,
        amount,
        expires_at_ns,
    }
}

/// Version 2's records of holds, reversals and hierarchies (`record-v2-money.bin`): every
/// effect kind, the Configured presence bit of a parent, and the fail codes of the money
/// model. Ids 1-10 from `base_ts`.
fn fixture_v2_money_records() -> Vec<Rec> {
    let t = FIXTURE_BASE_NS;
    let sub_account = AccountConfig {
        currency: 978,
        flags: 0,
        overdraft_limit: 0,
        max_balance: None,
        parent: 3,
    };
    vec![
        // 1: configure account 4 as a sub-account of 3, currency 978.
        committed(t, 0, Vec::new()).with_effects(vec![Effect::Configured {
            account: 4,
            config: sub_account,
        }]),
        // 2: hold 100 of account 1 for account 2, for one second.
        committed(t + 10, 0, Vec::new()).with_effects(vec![hold_opened(
            1,
            2,
            100,
            t + 1_000_000_010,
        )]),
        // 3: hold 50 of account 1 for account 3, no expiry, user_ref 9.
        committed(t + 20, 9, Vec::new()).with_effects(vec![hold_opened(1, 3, 50, 0)]),
        // 4: post 80 of hold 2: the entries move it, the rest is released.
        committed(t + 30, 0, vec![credit(1, 80, 920), debit(2, 80, 80)]).with_effects(vec![
            Effect::HoldPosted {
                hold_id: 2,
                amount: 80,
            },
        ]),
        // 5: void hold 3.
        committed(t + 40, 0, Vec::new()).with_effects(vec![Effect::HoldVoided { hold_id: 3 }]),
        // 6: post hold 3 again: it is closed.
        rejected(t + 40, 0, FailReason::HoldClosed),
        // 7: hold 5 of account 2 for account 1, expiring at once.
        committed(t + 50, 0, Vec::new()).with_effects(vec![hold_opened(2, 1, 5, t + 51)]),
        // 8: the expiry of hold 7.
        committed(t + 60, 0, Vec::new()).with_effects(vec![Effect::HoldExpired { hold_id: 7 }]),
        // 9: reverse transaction 4: the inverse entries, linked to 4 by both accounts.
        linked(
            t + 70,
            11,
            vec![credit(2, 80, 0), debit(1, 80, 1000)],
            vec![4, 4],
        )
        .with_effects(vec![Effect::Reversed { tx_id: 4 }]),
        // 10: reverse transaction 4 again: refused.
        rejected(t + 80, 0, FailReason::AlreadyReversed),
    ]
}

/// The money model's records in version 2 (`record-v2-money.bin`, written once with
/// `RECORD_FIXTURE_WRITE=1` like version 2's): today's encoder writes these bytes and the
/// decoder reads them back, so no later change can move them unnoticed.
#[test]
fn the_money_model_fixture_is_what_the_encoder_writes_and_the_decoder_reads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/record-v2-money.bin");
    check_written_fixture(&path, fixture_v2_money_records());
}

/// Records whose effects carry their accounts' back-links (`record-v2-linked.bin`, tag
/// bit 5): a configuration, holds placed, posted (a post's entries carry its links: the
/// record is not linked), voided and expired. Ids 1-7 from `base_ts`.
fn fixture_v2_linked_records() -> Vec<Rec> {
    let t = FIXTURE_BASE_NS;
    vec![
        // 1: configure account 4 (overdraft limit 100): its first transaction.
        committed(t, 0, Vec::new())
            .with_effects(vec![Effect::Configured {
                account: 4,
                config: AccountConfig {
                    overdraft_limit: 100,
                    ..AccountConfig::default()
                },
            }])
            .with_links(&[(4, 0)]),
        // 2: hold 100 of account 1 for account 2, no expiry: their first.
        committed(t + 10, 0, Vec::new())
            .with_effects(vec![hold_opened(1, 2, 100, 0)])
            .with_links(&[(1, 0), (2, 0)]),
        // 3: hold 50 of account 1 for account 4: back to 2 and to 1.
        committed(t + 10, 0, Vec::new())
            .with_effects(vec![hold_opened(1, 4, 50, 0)])
            .with_links(&[(1, 2), (4, 1)]),
        // 4: post 80 of hold 2: the entries link back to 3 and 2; no effect links.
        linked(
            t + 20,
            0,
            vec![credit(1, 80, -80), debit(2, 80, 80)],
            vec![3, 2],
        )
        .with_effects(vec![Effect::HoldPosted {
            hold_id: 2,
            amount: 80,
        }]),
        // 5: void hold 3: its accounts 1 and 4, back to 4 and 3.
        committed(t + 30, 0, Vec::new())
            .with_effects(vec![Effect::HoldVoided { hold_id: 3 }])
            .with_links(&[(1, 4), (4, 3)]),
        // 6: hold 5 of account 2 for account 1, expiring at t + 50.
        committed(t + 40, 0, Vec::new())
            .with_effects(vec![hold_opened(2, 1, 5, t + 50)])
            .with_links(&[(2, 4), (1, 5)]),
        // 7: its expiry: accounts 2 and 1, both back to 6.
        committed(t + 50, 0, Vec::new())
            .with_effects(vec![Effect::HoldExpired { hold_id: 6 }])
            .with_links(&[(2, 6), (1, 6)]),
    ]
}

/// The linked records (`record-v2-linked.bin`): written byte for byte by today's
/// encoder, read back with their links.
#[test]
fn the_linked_fixture_is_what_the_encoder_writes_and_the_decoder_reads() {
    check_written_fixture(&linked_fixture_path(), fixture_v2_linked_records());
}

fn linked_fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/record-v2-linked.bin")
}

/// The annotated hex dumps in docs/record-format.md are the fixtures, byte for byte, and
/// their offset columns are right.
#[test]
fn the_documented_hex_examples_are_the_fixtures() {
    let doc_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/record-format.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    for (heading, path) in [
        ("## Hex example, version 1\n", fixture_path(1)),
        ("## Hex example, version 2\n", fixture_path(2)),
        ("## Hex example, linked effects\n", linked_fixture_path()),
    ] {
        let section = doc.split(heading).nth(1).expect(heading);
        assert_eq!(
            hex(&documented_bytes(section)),
            hex(&std::fs::read(path).unwrap()),
            "{heading}"
        );
    }
}

/// The bytes of the first `text` block of a doc section, checking its offset column.
fn documented_bytes(section: &str) -> Vec<u8> {
    let block = section
        .split("```text\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a text block");
    let mut bytes = Vec::new();
    for line in block.lines().skip(1) {
        let mut tokens = line.split_whitespace();
        let offset = usize::from_str_radix(tokens.next().unwrap(), 16).unwrap();
        assert_eq!(offset, bytes.len(), "offset column of {line:?}");
        let before = bytes.len();
        for token in tokens {
            match (token.len(), u8::from_str_radix(token, 16)) {
                (2, Ok(b)) => bytes.push(b),
                _ => break,
            }
        }
        assert!(bytes.len() > before, "no bytes in {line:?}");
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// The size figure (docs/record-format.md, "Sizes")

#[test]
fn a_plain_transfer_takes_at_most_23_bytes() {
    // Accounts < 2^21 (3 bytes), amount < 2^14 (2 bytes), balances in (-2^27, 2^27)
    // (zigzag < 2^28: 4 bytes), back-links < 2^21 transactions back (3 bytes), user_ref 0,
    // same timestamp: 1 + 3 + 3 + 2 + 4 + 4 + 3 + 3.
    let worst = [
        credit((1 << 21) - 1, (1 << 14) - 1, -(1 << 27) + 1),
        debit((1 << 21) - 2, (1 << 14) - 1, (1 << 27) - 1),
    ];
    let small = [credit(1, 1, -1), debit(2, 1, 1)];
    let first: TxId = 1 << 22;
    let far = first + 1 - ((1 << 21) - 1);
    for (entries, prev, want) in [(&worst, [far, far], 23), (&small, [first, first], 8)] {
        let mut buf = Vec::new();
        let mut encoder = FrameEncoder::new(&mut buf, first, 100);
        encoder.push(
            &mut buf,
            RecordRef {
                timestamp_ns: 100,
                user_ref: 0,
                outcome: Outcome::Committed,
                entries,
                prev_tx_ids: &[0, 0],
                effects: &[],
                effect_links: &[],
            },
        );
        let header = buf.len();
        encoder.push(
            &mut buf,
            RecordRef {
                timestamp_ns: 100,
                user_ref: 0,
                outcome: Outcome::Committed,
                entries,
                prev_tx_ids: &prev,
                effects: &[],
                effect_links: &[],
            },
        );
        assert_eq!(buf.len() - header, want);
        let (decoded, end) = decode(&buf, first, 2);
        assert_eq!(end, Ok(()));
        assert_eq!(decoded[1].1.prev, prev);
    }
}

// ---------------------------------------------------------------------------------------
// What the decoder refuses: one test per RecordError variant

#[test]
fn unknown_version() {
    for version in [0u8, 3, 0xff] {
        assert_eq!(
            FrameDecoder::new(&[version, 0], 1, 0).unwrap_err(),
            RecordError::UnknownVersion { version }
        );
    }
}

#[test]
fn sequence_overflow() {
    assert_eq!(
        FrameDecoder::new(&frame(&[0x03]), u64::MAX, 1).unwrap_err(),
        RecordError::SequenceOverflow {
            first_seq: u64::MAX,
            record_count: 1
        }
    );
    // The last id may be u64::MAX - 1 (first_seq + record_count must fit).
    assert!(FrameDecoder::new(&frame(&[0x03]), u64::MAX - 1, 1).is_ok());
}

#[test]
fn truncated() {
    assert_eq!(
        FrameDecoder::new(&[], 9, 1).unwrap_err(),
        RecordError::Truncated {
            tx_id: 9,
            offset: 0
        }
    );
    assert_eq!(
        FrameDecoder::new(&[1, 0x80], 9, 1).unwrap_err(),
        RecordError::Truncated {
            tx_id: 9,
            offset: 1
        }
    );
    // A missing record; a Pair cut inside its third field; a missing fail code.
    assert_eq!(
        decode_error(&frame(&[]), 1),
        RecordError::Truncated {
            tx_id: 1,
            offset: 2
        }
    );
    assert_eq!(
        decode_error(&frame(&[0x03, 0x01, 0x01, 0x02, 0x80]), 2),
        RecordError::Truncated {
            tx_id: 2,
            offset: 6
        }
    );
    assert_eq!(
        decode_error(&frame(&[0x00]), 1),
        RecordError::Truncated {
            tx_id: 1,
            offset: 3
        }
    );
}

#[test]
fn varint_overflow() {
    // An 11-byte varint, and a 10-byte one above u64::MAX, as a user_ref.
    let mut eleven = vec![0x08];
    eleven.extend([0xff; 10]);
    eleven.push(0x01);
    assert_eq!(
        decode_error(&frame(&eleven), 1),
        RecordError::VarintOverflow {
            tx_id: 1,
            offset: 3
        }
    );
    let mut big = vec![0x08];
    big.extend([0xff; 9]);
    big.push(0x02);
    big.push(0x03);
    assert_eq!(
        decode_error(&frame(&big), 1),
        RecordError::VarintOverflow {
            tx_id: 1,
            offset: 3
        }
    );
    // In the payload header (the base timestamp): named after first_seq.
    let mut header = vec![RECORD_FORMAT_VERSION];
    header.extend([0xff; 10]);
    assert_eq!(
        FrameDecoder::new(&header, 5, 0).unwrap_err(),
        RecordError::VarintOverflow {
            tx_id: 5,
            offset: 1
        }
    );
}

#[test]
fn varint_overlong() {
    // Empty record, then a Pair whose credit account is 1 written as 81 00.
    let payload = frame(&[0x03, 0x01, 0x81, 0x00, 0x02, 0x05, 0x01, 0x02]);
    assert_eq!(
        decode_error(&payload, 2),
        RecordError::VarintOverlong {
            tx_id: 2,
            offset: 4
        }
    );
    // The same with every field well formed decodes.
    let well_formed = [0x03, 0x01, 0x01, 0x02, 0x05, 0x01, 0x02, 0x00, 0x00];
    let (_, end) = decode(&frame(&well_formed), 1, 2);
    assert_eq!(end, Ok(()));
}

#[test]
fn reserved_bits() {
    // Bit 5 (linked) only with bit 4 (effects).
    for bit in 5..8 {
        let tag = 0x03 | 1 << bit;
        assert_eq!(
            decode_error(&frame(&[0x03, tag]), 2),
            RecordError::ReservedBits {
                tx_id: 2,
                offset: 3,
                tag
            }
        );
    }
    // Version 1 has no effects bit.
    for bit in 4..8 {
        let tag = 0x03 | 1 << bit;
        assert_eq!(
            decode(&frame_v1(&[0x03, tag]), 1, 2).1,
            Err(RecordError::ReservedBits {
                tx_id: 2,
                offset: 3,
                tag
            })
        );
    }
    // A rejection has no effects.
    assert_eq!(
        decode_error(&frame(&[0x10, 0x01]), 1),
        RecordError::ReservedBits {
            tx_id: 1,
            offset: 2,
            tag: 0x10
        }
    );
}

#[test]
fn non_canonical() {
    assert_eq!(
        decode_error(&frame(&[0x07, 0x00]), 1),
        RecordError::NonCanonical {
            tx_id: 1,
            offset: 3,
            field: "timestamp delta"
        }
    );
    assert_eq!(
        decode_error(&frame(&[0x0b, 0x00]), 1),
        RecordError::NonCanonical {
            tx_id: 1,
            offset: 3,
            field: "user_ref"
        }
    );
}

#[test]
fn timestamp_overflow() {
    // Base u64::MAX - 1: a delta of 1 fits, the next one does not.
    let mut payload = vec![RECORD_FORMAT_VERSION];
    payload.extend(varint(u64::MAX - 1));
    let at = payload.len();
    payload.extend([0x07, 0x01, 0x07, 0x01]);
    let (decoded, end) = decode(&payload, 1, 2);
    assert_eq!(decoded[0].1.timestamp_ns, u64::MAX);
    assert_eq!(
        end,
        Err(RecordError::TimestampOverflow {
            tx_id: 2,
            offset: at + 3
        })
    );
}

#[test]
fn invalid_fail_code() {
    for code in [0u8, 21, 100, 127] {
        assert_eq!(
            decode_error(&frame(&[0x00, code]), 1),
            RecordError::InvalidFailCode {
                tx_id: 1,
                offset: 3,
                code
            }
        );
    }
    // Codes 9-20 came with version 2.
    for code in 9..=20u8 {
        assert_eq!(
            decode(&frame_v1(&[0x00, code]), 1, 1).1,
            Err(RecordError::InvalidFailCode {
                tx_id: 1,
                offset: 3,
                code
            })
        );
    }
    for code in (1..=20u8).filter(|&c| c != 7).chain(128..=255) {
        let (decoded, end) = decode(&frame(&[0x00, code]), 1, 1);
        assert_eq!(end, Ok(()), "code {code}");
        let Outcome::Rejected(reason) = decoded[0].1.outcome else {
            panic!("code {code} decoded as committed");
        };
        assert_eq!(reason.code(), code);
    }
}

#[test]
fn invalid_duplicate() {
    // Transaction 3 may be a duplicate of 2, 1 or 0 (distance 1..=3), nothing else.
    let body = |distance: u8| frame(&[0x03, 0x03, 0x00, 0x07, distance]);
    for distance in [0u8, 4, 100] {
        assert_eq!(
            decode_error(&body(distance), 3),
            RecordError::InvalidDuplicate {
                tx_id: 3,
                offset: 6,
                distance: u64::from(distance)
            }
        );
    }
    let (decoded, end) = decode(&body(3), 1, 3);
    assert_eq!(end, Ok(()));
    assert_eq!(
        decoded[2].1.outcome,
        Outcome::Rejected(FailReason::Duplicate { original_tx_id: 0 })
    );
}

#[test]
fn bad_entry_count() {
    assert_eq!(
        decode_error(&frame(&[0x02, 0x00]), 1),
        RecordError::BadEntryCount {
            tx_id: 1,
            offset: 3,
            count: 0
        }
    );
    let mut payload = frame(&[0x02]);
    payload.extend(varint(RECORD_ENTRIES_MAX as u64 + 1));
    assert_eq!(
        decode_error(&payload, 1),
        RecordError::BadEntryCount {
            tx_id: 1,
            offset: 3,
            count: 65_536
        }
    );
    // The largest count is accepted (and then the entries are missing).
    let mut payload = frame(&[0x02]);
    payload.extend(varint(RECORD_ENTRIES_MAX as u64));
    assert_eq!(
        decode_error(&payload, 1),
        RecordError::Truncated {
            tx_id: 1,
            offset: 6
        }
    );
}

#[test]
fn invalid_amount() {
    let too_big = varint(AMOUNT_MAX + 1);
    // Pair: credit account 1, debit account 2, then the amount at offset 5.
    for amount in [vec![0x00], too_big.clone()] {
        let payload = frame(&[&[0x01, 0x01, 0x02][..], &amount, &[0x01, 0x02]].concat());
        let want = u64::from_le_bytes(
            {
                let mut v = 0u64;
                for (i, b) in amount.iter().enumerate() {
                    v |= u64::from(b & 0x7f) << (7 * i);
                }
                v
            }
            .to_le_bytes(),
        );
        assert_eq!(
            decode_error(&payload, 1),
            RecordError::InvalidAmount {
                tx_id: 1,
                offset: 5,
                amount: want
            }
        );
    }
    // List: one entry (account 1, Debit), amount 0 at offset 5.
    assert_eq!(
        decode_error(&frame(&[0x02, 0x01, 0x03, 0x00, 0x02]), 1),
        RecordError::InvalidAmount {
            tx_id: 1,
            offset: 5,
            amount: 0
        }
    );
    // The largest amount is accepted.
    let max = varint(AMOUNT_MAX);
    let payload = frame(&[&[0x02, 0x01, 0x03][..], &max, &[0x02, 0x00]].concat());
    let (decoded, end) = decode(&payload, 1, 1);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded[0].1.entries, vec![debit(1, AMOUNT_MAX, 1)]);
}

#[test]
fn invalid_account() {
    let limit = varint(ACCOUNT_ID_LIMIT);
    // As a Pair's debit account (offset 3: after tag and credit account).
    let payload = frame(&[&[0x01, 0x01][..], &limit, &[0x01, 0x00, 0x00]].concat());
    assert_eq!(
        decode_error(&payload, 1),
        RecordError::InvalidAccount {
            tx_id: 1,
            offset: 4,
            account_id: ACCOUNT_ID_LIMIT
        }
    );
    // The largest account id is accepted.
    let max = varint(ACCOUNT_ID_LIMIT - 1);
    let payload = frame(&[&[0x01][..], &max, &max, &[0x01, 0x00, 0x00, 0x00, 0x00]].concat());
    assert_eq!(decode(&payload, 1, 1).1, Ok(()));
}

#[test]
fn invalid_link() {
    // Transaction 3: an Empty record, then tx 4 a Pair whose debit back-link is 4 (to
    // transaction 0) at offset 10.
    let payload = frame(&[0x03, 0x01, 0x01, 0x02, 0x05, 0x01, 0x02, 0x01, 0x04]);
    assert_eq!(
        decode(&payload, 3, 2).1,
        Err(RecordError::InvalidLink {
            tx_id: 4,
            offset: 10,
            distance: 4
        })
    );
    // Three back is transaction 1: fine.
    let payload = frame(&[0x03, 0x01, 0x01, 0x02, 0x05, 0x01, 0x02, 0x01, 0x03]);
    let (decoded, end) = decode(&payload, 3, 2);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded[1].1.prev, vec![3, 1]);
}

#[test]
fn encoder_refuses_bad_links() {
    let mut record = committed(0, 0, vec![credit(1, 1, -1), debit(2, 1, 1)]);
    for prev in [vec![0], vec![0, 0, 0], vec![5, 0], vec![0, 9]] {
        record.prev = prev.clone();
        let (result, len) = try_push(5, 0, &record);
        assert_eq!(
            result,
            Err(EncodeError::InvalidLinks {
                tx_id: 5,
                entries: 2,
                links: prev.len()
            }),
            "{prev:?}"
        );
        assert_eq!(len, 2, "nothing appended after the header");
    }
}

#[test]
fn trailing_bytes() {
    assert_eq!(
        decode_error(&frame(&[0x03, 0x03, 0xaa, 0xbb]), 2),
        RecordError::TrailingBytes {
            offset: 4,
            bytes: 2
        }
    );
    assert_eq!(
        decode_error(&frame(&[0x00]), 0),
        RecordError::TrailingBytes {
            offset: 2,
            bytes: 1
        }
    );
}

#[test]
fn a_failed_decoder_keeps_failing() {
    let payload = frame(&[0x03, 0xf3, 0x03]);
    let mut decoder = FrameDecoder::new(&payload, 1, 3).unwrap();
    assert!(decoder.next_record().unwrap().is_some());
    let error = decoder.next_record().unwrap_err();
    assert!(matches!(error, RecordError::ReservedBits { tx_id: 2, .. }));
    assert_eq!(decoder.next_record().unwrap_err(), error);
}

#[test]
fn every_error_names_where() {
    let error = RecordError::InvalidAmount {
        tx_id: 12,
        offset: 34,
        amount: 0,
    };
    assert_eq!(
        error.to_string(),
        "transaction 12: amount 0 at offset 34 is not in 1..=i64::MAX"
    );
}

// ---------------------------------------------------------------------------------------
// What the encoder refuses

fn try_push(first_seq: TxId, base: u64, record: &Rec) -> (Result<(), EncodeError>, usize) {
    let mut buf = Vec::new();
    let mut encoder = FrameEncoder::new(&mut buf, first_seq, base);
    let before = buf.len();
    let result = encoder.try_push(&mut buf, record.as_ref());
    if result.is_err() {
        assert_eq!(buf.len(), before, "nothing written for a refused record");
        assert_eq!(encoder.records(), 0);
    }
    (result, buf.len())
}

#[test]
fn encoder_refuses_a_decreasing_timestamp() {
    assert_eq!(
        try_push(5, 100, &committed(99, 0, Vec::new())).0,
        Err(EncodeError::TimestampDecreasing {
            tx_id: 5,
            timestamp_ns: 99,
            previous_ns: 100
        })
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "is below the previous")]
fn push_debug_asserts_a_decreasing_timestamp() {
    let mut buf = Vec::new();
    FrameEncoder::new(&mut buf, 1, 100).push(&mut buf, committed(99, 0, Vec::new()).as_ref());
}

#[test]
#[cfg(not(debug_assertions))]
fn push_clamps_a_decreasing_timestamp_in_release() {
    let mut buf = Vec::new();
    FrameEncoder::new(&mut buf, 1, 100).push(&mut buf, committed(99, 0, Vec::new()).as_ref());
    let (decoded, end) = decode(&buf, 1, 1);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded[0].1.timestamp_ns, 100);
}

#[test]
fn encoder_refuses_a_rejection_with_entries() {
    let mut record = rejected(0, 0, FailReason::InsufficientFunds);
    record.entries = vec![credit(1, 1, -1)];
    assert_eq!(
        try_push(1, 0, &record).0,
        Err(EncodeError::RejectedWithEntries {
            tx_id: 1,
            entries: 1
        })
    );
}

#[test]
fn encoder_refuses_a_duplicate_that_is_not_older() {
    for original_tx_id in [5, 6] {
        let record = rejected(0, 1, FailReason::Duplicate { original_tx_id });
        assert_eq!(
            try_push(5, 0, &record).0,
            Err(EncodeError::InvalidDuplicate {
                tx_id: 5,
                original_tx_id
            })
        );
    }
}

#[test]
fn encoder_refuses_bad_amounts_and_accounts() {
    for (entries, index) in [
        (vec![credit(1, 0, 0), debit(2, 0, 0)], 0),
        (vec![debit(1, 1, 1), credit(2, 0, 0)], 1),
        (vec![debit(1, AMOUNT_MAX + 1, 0)], 0),
    ] {
        let amount = entries[index].amount;
        assert_eq!(
            try_push(1, 0, &committed(0, 0, entries)).0,
            Err(EncodeError::InvalidAmount {
                tx_id: 1,
                index,
                amount
            })
        );
    }
    for (entries, index) in [
        (vec![credit(ACCOUNT_ID_LIMIT, 1, 0), debit(2, 1, 0)], 0),
        (vec![debit(1, 1, 1), debit(u64::MAX, 1, 0)], 1),
    ] {
        let account_id = entries[index].account_id;
        assert_eq!(
            try_push(1, 0, &committed(0, 0, entries)).0,
            Err(EncodeError::InvalidAccount {
                tx_id: 1,
                index,
                account_id
            })
        );
    }
}

#[test]
fn encoder_refuses_too_many_entries() {
    let entries = vec![debit(1, 1, 1); RECORD_ENTRIES_MAX + 1];
    assert_eq!(
        try_push(1, 0, &committed(0, 0, entries)).0,
        Err(EncodeError::TooManyEntries {
            tx_id: 1,
            count: 65_536
        })
    );
}

#[test]
fn encoder_refuses_a_record_past_the_id_space() {
    let record = committed(0, 0, Vec::new());
    assert_eq!(try_push(u64::MAX - 1, 0, &record).0, Ok(()));
    assert_eq!(
        try_push(u64::MAX, 0, &record).0,
        Err(EncodeError::FrameFull {
            first_seq: u64::MAX,
            records: 0
        })
    );
}

#[test]
#[should_panic(expected = "record encoder: transaction 1: entry 0 has amount 0")]
fn push_panics_on_a_record_the_format_cannot_hold() {
    let mut buf = Vec::new();
    FrameEncoder::new(&mut buf, 1, 0)
        .push(&mut buf, committed(0, 0, vec![debit(1, 0, 0)]).as_ref());
}

// ---------------------------------------------------------------------------------------
// Effects (version 2)

fn configured(account: u64) -> Effect {
    Effect::Configured {
        account,
        config: AccountConfig {
            currency: u32::MAX,
            flags: u32::MAX,
            overdraft_limit: AMOUNT_MAX,
            max_balance: Some(i64::MIN),
            parent: ACCOUNT_ID_LIMIT - 1,
        },
    }
}

#[test]
fn the_largest_effects_block_round_trips() {
    let effects: Vec<Effect> = (1..=RECORD_EFFECTS_MAX as u64).map(configured).collect();
    let records = vec![committed(5, 0, Vec::new()).with_effects(effects)];
    let payload = encode(1, &records);
    let (decoded, end) = decode(&payload, 1, 1);
    assert_eq!(end, Ok(()));
    assert_eq!(decoded[0].1, records[0]);
    let too_many = (0..=RECORD_EFFECTS_MAX as u64)
        .map(|a| configured(a + 1))
        .collect();
    assert_eq!(
        try_push(1, 5, &committed(5, 0, Vec::new()).with_effects(too_many)).0,
        Err(EncodeError::TooManyEffects {
            tx_id: 1,
            count: 256
        })
    );
}

#[test]
fn a_bad_effects_block_is_refused() {
    // Empty (committed) with effects: count, kind 01, account, currency, flags, overdraft,
    // presence.
    let with = |block: &[u8]| frame(&[&[0x13][..], block].concat());
    let good = [0x01, 0x01, 0x05, 0x00, 0x02, 0x00, 0x00];
    assert_eq!(decode(&with(&good), 1, 1).1, Ok(()));
    let cases: [(&[u8], RecordError); 10] = [
        (
            &[0x00],
            RecordError::BadEffectCount {
                tx_id: 1,
                offset: 3,
                count: 0,
            },
        ),
        (
            &[0x80, 0x02],
            RecordError::BadEffectCount {
                tx_id: 1,
                offset: 3,
                count: 256,
            },
        ),
        (
            &[0x01, 0x07],
            RecordError::UnknownEffect {
                tx_id: 1,
                offset: 4,
                kind: 7,
            },
        ),
        (
            &[0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "the system account cannot be configured",
            },
        ),
        (
            &[
                0x01, 0x01, 0x05, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 0x00, 0x00,
            ],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "currency",
            },
        ),
        (
            &[
                0x01, 0x01, 0x05, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 0x00,
            ],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "flags",
            },
        ),
        (
            &[
                0x01, 0x01, 0x05, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                0x01, 0x00,
            ],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "overdraft limit above i64::MAX",
            },
        ),
        (
            &[0x01, 0x01, 0x05, 0x00, 0x00, 0x00, 0x04],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "presence byte",
            },
        ),
        // A parent that is the account itself, or the system account.
        (
            &[0x01, 0x01, 0x05, 0x00, 0x00, 0x00, 0x02, 0x05],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "the parent is the system account or the account",
            },
        ),
        (
            &[0x01, 0x01, 0x05, 0x00, 0x00, 0x00, 0x02, 0x00],
            RecordError::InvalidEffect {
                tx_id: 1,
                offset: 5,
                reason: "the parent is the system account or the account",
            },
        ),
    ];
    for (block, error) in cases {
        assert_eq!(decode_error(&with(block), 1), error, "{block:02x?}");
    }
    // A maximum and a parent: both follow, in that order.
    let both = [0x01, 0x01, 0x05, 0x00, 0x00, 0x00, 0x03, 0x14, 0x04];
    let (decoded, end) = decode(&with(&both), 1, 1);
    assert_eq!(end, Ok(()));
    let Effect::Configured { config, .. } = decoded[0].1.effects[0] else {
        panic!("a configuration")
    };
    assert_eq!((config.max_balance, config.parent), (Some(10), 4));
    // Holds: transaction 3 may name holds 1 and 2 (distance 1..=2), nothing else; a hold
    // between an account and itself is refused.
    let at_3 = |block: &[u8]| {
        let mut payload = frame(&[0x03, 0x03]);
        payload.extend([0x13]);
        payload.extend(block);
        decode(&payload, 1, 3).1
    };
    assert_eq!(at_3(&[0x01, 0x04, 0x02]), Ok(()));
    for distance in [0u8, 3] {
        for kind in [0x03u8, 0x04, 0x05, 0x06] {
            let block: Vec<u8> = if kind == 0x03 {
                vec![0x01, kind, distance, 0x05]
            } else {
                vec![0x01, kind, distance]
            };
            let reason = if kind == 0x06 {
                "the original is not an earlier transaction"
            } else {
                "the hold is not an earlier transaction"
            };
            assert_eq!(
                at_3(&block),
                Err(RecordError::InvalidEffect {
                    tx_id: 3,
                    offset: 7,
                    reason,
                }),
                "kind {kind} distance {distance}"
            );
        }
    }
    assert_eq!(
        at_3(&[0x01, 0x02, 0x04, 0x04, 0x01, 0x00]),
        Err(RecordError::InvalidEffect {
            tx_id: 3,
            offset: 7,
            reason: "a hold between an account and itself",
        })
    );
}

#[test]
fn the_encoder_refuses_effects_the_format_cannot_hold() {
    let rejected_with =
        rejected(5, 0, FailReason::InvalidOperation).with_effects(vec![configured(3)]);
    assert_eq!(
        try_push(1, 5, &rejected_with).0,
        Err(EncodeError::RejectedWithEffects {
            tx_id: 1,
            effects: 1
        })
    );
    for (account, config, reason) in [
        (
            0,
            AccountConfig::default(),
            "the account is the system account or not below 2^63",
        ),
        (
            ACCOUNT_ID_LIMIT,
            AccountConfig::default(),
            "the account is the system account or not below 2^63",
        ),
        (
            1,
            AccountConfig {
                overdraft_limit: AMOUNT_MAX + 1,
                ..AccountConfig::default()
            },
            "the overdraft limit is above i64::MAX",
        ),
    ] {
        let record =
            committed(5, 0, Vec::new()).with_effects(vec![Effect::Configured { account, config }]);
        // try_push checks that nothing was written.
        assert_eq!(
            try_push(1, 5, &record).0,
            Err(EncodeError::InvalidEffect {
                tx_id: 1,
                index: 0,
                reason
            })
        );
    }
}

#[test]
fn linked_records_are_refused_when_their_links_cannot_be_right() {
    // A linked record whose effects link no account (a post alone): not canonical.
    let post_only = frame(&[0x03, 0x33, 0x01, 0x03, 0x01, 0x05]);
    assert_eq!(
        decode_error(&post_only, 2),
        RecordError::NonCanonical {
            tx_id: 2,
            offset: 4,
            field: "linked effects without an account"
        }
    );
    // A void between an account and itself.
    assert_eq!(
        decode_error(
            &frame(&[0x03, 0x33, 0x01, 0x04, 0x01, 0x07, 0x07, 0x00, 0x00]),
            2
        ),
        RecordError::InvalidEffect {
            tx_id: 2,
            offset: 7,
            reason: "a hold between an account and itself",
        }
    );
    // A link reaching before transaction 1.
    assert_eq!(
        decode_error(
            &frame(&[0x33, 0x01, 0x01, 0x04, 0x00, 0x02, 0x00, 0x00, 0x02]),
            1
        ),
        RecordError::InvalidLink {
            tx_id: 1,
            offset: 10,
            distance: 2
        }
    );
    // Truncated inside the links.
    assert!(matches!(
        decode_error(&frame(&[0x33, 0x01, 0x02, 0x01, 0x02, 0x05, 0x00, 0x00]), 1),
        RecordError::Truncated { tx_id: 1, .. }
    ));
}

#[test]
fn encoder_refuses_effect_links_that_do_not_match_the_effects() {
    let hold = Effect::HoldOpened {
        from: 1,
        to: 2,
        amount: 5,
        expires_at_ns: 0,
    };
    let base = committed(5, 0, Vec::new()).with_effects(vec![hold]);
    for (links, reason) in [
        (vec![(1, 0)], "not one per account the effects touch"),
        (
            vec![(1, 0), (2, 0), (3, 0)],
            "not one per account the effects touch",
        ),
        (vec![(2, 0), (1, 0)], "an account the effect does not name"),
        (
            vec![(1, 4), (2, 0)],
            "an account not below 2^63 or a link not older",
        ),
        (
            vec![(ACCOUNT_ID_LIMIT, 0), (2, 0)],
            "an account not below 2^63 or a link not older",
        ),
    ] {
        let record = base.clone().with_links(&links);
        assert_eq!(
            try_push(4, 5, &record).0,
            Err(EncodeError::InvalidEffectLinks { tx_id: 4, reason }),
            "{links:?}"
        );
    }
    let void = committed(5, 0, Vec::new())
        .with_effects(vec![Effect::HoldVoided { hold_id: 1 }])
        .with_links(&[(3, 0), (3, 0)]);
    assert_eq!(
        try_push(4, 5, &void).0,
        Err(EncodeError::InvalidEffectLinks {
            tx_id: 4,
            reason: "an account the effect does not name"
        })
    );
    // Links for effects that touch no account cannot be stored either.
    let post = committed(5, 0, Vec::new())
        .with_effects(vec![Effect::HoldPosted {
            hold_id: 1,
            amount: 5,
        }])
        .with_links(&[(1, 0)]);
    assert!(matches!(
        try_push(4, 5, &post).0,
        Err(EncodeError::InvalidEffectLinks { .. })
    ));
}
