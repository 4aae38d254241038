//! The offline check on stopped nodes: their WALs hold one history. Each node's records
//! frames are decoded (optional frames skipped: durable marks, Raft entry headers) and
//! walked in step by transaction id: every node's ids are gap-free, and every id held by
//! several nodes names the same record (outcome, entries with balances after, back-links,
//! user_ref, timestamp). Along the way: each acknowledgement is in the log as
//! acknowledged, no user_ref committed twice, no forbidden user_ref anywhere, and the
//! balances the entries add up to.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use ledger_core::record::FrameDecoder;
use ledger_core::transaction::{Entry, EntryKind, Outcome};
use ledger_wal::{FrameKind, WalReader};

/// One decoded record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub tx_id: u64,
    pub timestamp_ns: u64,
    pub user_ref: u64,
    pub outcome: Outcome,
    pub entries: Vec<Entry>,
    pub prev_tx_ids: Vec<u64>,
}

impl Record {
    /// 0 committed, else the FailReason code (as the API reports it).
    pub fn fail_reason(&self) -> u32 {
        match self.outcome {
            Outcome::Committed => 0,
            Outcome::Rejected(reason) => u32::from(reason.code()),
        }
    }
}

/// One node's records in id order, a frame at a time.
struct NodeLog {
    node: u64,
    dir: PathBuf,
    frames: ledger_wal::Frames,
    pending: VecDeque<Record>,
    /// The id the next record must have (gap-free), once one was read.
    expected: Option<u64>,
    first: Option<u64>,
    last: Option<u64>,
}

impl NodeLog {
    fn open(node: u64, dir: &Path) -> Result<NodeLog, String> {
        let reader =
            WalReader::open(dir).map_err(|e| format!("node {node}: {}: {e}", dir.display()))?;
        Ok(NodeLog {
            node,
            dir: dir.to_path_buf(),
            frames: reader.frames(),
            pending: VecDeque::new(),
            expected: None,
            first: None,
            last: None,
        })
    }

    fn error(&self, what: impl std::fmt::Display) -> String {
        format!("node {} ({}): {what}", self.node, self.dir.display())
    }

    /// The next record without taking it.
    fn peek(&mut self) -> Result<Option<&Record>, String> {
        while self.pending.is_empty() {
            let frame = match self.frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            // Durable marks (0x80) and Raft entry headers (0x81) carry no records.
            if frame.kind != FrameKind::Records {
                continue;
            }
            let (first_seq, count, segment, offset) = (
                frame.first_seq,
                frame.record_count,
                frame.segment,
                frame.offset,
            );
            let at = |e| {
                format!(
                    "node {} ({}): segment {segment} offset {offset}: {e}",
                    self.node,
                    self.dir.display()
                )
            };
            let mut decoder = FrameDecoder::new(frame.payload, first_seq, count).map_err(&at)?;
            let mut decoded = Vec::with_capacity(count as usize);
            while let Some(r) = decoder.next_record().map_err(&at)? {
                decoded.push(Record {
                    tx_id: r.tx_id,
                    timestamp_ns: r.timestamp_ns,
                    user_ref: r.user_ref,
                    outcome: r.outcome,
                    entries: r.entries.to_vec(),
                    prev_tx_ids: r.prev_tx_ids.to_vec(),
                });
            }
            self.pending.extend(decoded);
        }
        Ok(self.pending.front())
    }

    /// Takes the next record, checking the ids run on without a gap.
    fn take(&mut self) -> Result<Option<Record>, String> {
        self.peek()?;
        let Some(record) = self.pending.pop_front() else {
            return Ok(None);
        };
        if let Some(expected) = self.expected
            && record.tx_id != expected
        {
            return Err(self.error(format!(
                "transaction {} follows {}: the log has a gap or goes back",
                record.tx_id,
                expected - 1
            )));
        }
        self.expected = Some(record.tx_id + 1);
        self.first.get_or_insert(record.tx_id);
        self.last = Some(record.tx_id);
        Ok(Some(record))
    }
}

/// What the logs must agree with beyond each other.
#[derive(Debug, Default)]
pub struct Expect {
    /// Acknowledged transactions: id -> (user_ref, fail_reason).
    pub acks: HashMap<u64, (u64, u32)>,
    /// user_refs that must be in no log (sent only to a node that could not replicate).
    pub forbidden_refs: HashSet<u64>,
}

/// What the logs held.
#[derive(Debug, Default)]
pub struct WalReport {
    /// Per node: the first and last transaction id in its WAL (`None`: no records).
    pub ranges: BTreeMap<u64, Option<(u64, u64)>>,
    /// Ids held by two nodes or more, compared.
    pub compared: u64,
    /// Distinct ids seen.
    pub records: u64,
    /// Each account's balance after every record seen (committed entries added up).
    pub balances: BTreeMap<u64, i64>,
}

impl WalReport {
    /// The balances of accounts `0..=last`.
    pub fn balances_up_to(&self, last: u64) -> Vec<i64> {
        (0..=last)
            .map(|a| self.balances.get(&a).copied().unwrap_or(0))
            .collect()
    }
}

/// Compares the WALs `(node, wal dir)` of stopped nodes; see the module docs.
pub fn compare(wals: &[(u64, PathBuf)], expect: &Expect) -> Result<WalReport, String> {
    let mut logs = wals
        .iter()
        .map(|(node, dir)| NodeLog::open(*node, dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = WalReport::default();
    let mut committed_refs: HashMap<u64, u64> = HashMap::new();
    let mut acks_found = 0usize;
    // Each step takes the lowest id any node has next, from every node that has it.
    let mut next_ids = Vec::with_capacity(logs.len());
    loop {
        next_ids.clear();
        for log in &mut logs {
            next_ids.push(log.peek()?.map(|r| r.tx_id));
        }
        let Some(id) = next_ids.iter().flatten().min().copied() else {
            break;
        };
        let mut holders: Vec<(u64, Record)> = Vec::new();
        for (log, next) in logs.iter_mut().zip(&next_ids) {
            if *next == Some(id)
                && let Some(record) = log.take()?
            {
                holders.push((log.node, record));
            }
        }
        let Some((first_node, record)) = holders.first() else {
            break;
        };
        for (node, other) in &holders[1..] {
            if other != record {
                return Err(format!(
                    "DIVERGED: transaction {id} differs between nodes {first_node} and {node}:\n {record:?}\n {other:?}"
                ));
            }
        }
        if holders.len() > 1 {
            report.compared += 1;
        }
        report.records += 1;
        check_record(record, expect, &mut committed_refs, &mut report.balances)?;
        if expect.acks.contains_key(&id) {
            acks_found += 1;
        }
    }
    if acks_found != expect.acks.len() {
        let last = logs.iter().filter_map(|l| l.last).max().unwrap_or(0);
        let missing: Vec<u64> = expect
            .acks
            .keys()
            .filter(|&&id| id > last)
            .take(10)
            .copied()
            .collect();
        return Err(format!(
            "LOST: {} acknowledged transactions are in no log (the logs end at {last}; e.g. {missing:?})",
            expect.acks.len() - acks_found
        ));
    }
    for log in &logs {
        report.ranges.insert(log.node, log.first.zip(log.last));
    }
    Ok(report)
}

/// One record (already the same on every node holding it) against the expectations.
fn check_record(
    record: &Record,
    expect: &Expect,
    committed_refs: &mut HashMap<u64, u64>,
    balances: &mut BTreeMap<u64, i64>,
) -> Result<(), String> {
    let id = record.tx_id;
    if let Some(&(user_ref, fail_reason)) = expect.acks.get(&id)
        && (record.user_ref != user_ref || record.fail_reason() != fail_reason)
    {
        return Err(format!(
            "transaction {id} was acknowledged as user_ref {user_ref} fail_reason {fail_reason}, the logs hold {record:?}"
        ));
    }
    if expect.forbidden_refs.contains(&record.user_ref) {
        return Err(format!(
            "transaction {id} holds user_ref {}, which only an isolated node ever saw: its unreplicated execution survived: {record:?}",
            record.user_ref
        ));
    }
    if record.outcome == Outcome::Committed
        && record.user_ref != 0
        && let Some(first) = committed_refs.insert(record.user_ref, id)
    {
        return Err(format!(
            "user_ref {} committed twice: transactions {first} and {id}",
            record.user_ref
        ));
    }
    for e in &record.entries {
        let balance = balances.entry(e.account_id).or_insert(0);
        *balance += match e.kind {
            EntryKind::Credit => -i64::try_from(e.amount).unwrap_or(i64::MAX),
            EntryKind::Debit => i64::try_from(e.amount).unwrap_or(i64::MAX),
        };
        if *balance != e.balance_after {
            return Err(format!(
                "transaction {id}: account {} adds up to {balance}, the entry says {}",
                e.account_id, e.balance_after
            ));
        }
    }
    Ok(())
}
