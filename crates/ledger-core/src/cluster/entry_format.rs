//! The header frame of a replicated-log entry in the WAL (optional frame kind 0x81):
//! which entry it is (term, leader, index), what it carries, and for a normal entry how
//! many records frames follow it. Readers that do not know the kind (a single-node
//! recovery, `ledger-cli`) skip it; the records frames after it are ordinary.
//!
//! ```text
//! version u8 = 1 | kind u8 (0 blank, 1 normal, 2 membership) | term u64 | leader u64 | index u64
//! normal:     frames u32
//! membership: configs u32, per config: ids u32, id u64...; nodes u32, per node: id u64, addr_len u32, addr
//! ```
//! Integers are little-endian. The frame's own crc32c covers the header.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};

/// The WAL frame kind of an entry header (an optional kind: see `docs/wal-format.md`).
pub const ENTRY_HEADER_KIND: u8 = 0x81;

const VERSION: u8 = 1;

/// What an entry carries after its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderBody {
    /// A new leader's first entry.
    Blank,
    /// Transactions: this many records frames follow.
    Normal { frames: u32 },
    /// A membership change.
    Membership(Membership<u64, BasicNode>),
}

/// A decoded entry header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub log_id: LogId<u64>,
    pub body: HeaderBody,
}

/// Why a header frame did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("replicated-log entry header: {0}")]
pub struct HeaderError(&'static str);

impl EntryHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        out.push(match self.body {
            HeaderBody::Blank => 0,
            HeaderBody::Normal { .. } => 1,
            HeaderBody::Membership(_) => 2,
        });
        out.extend_from_slice(&self.log_id.leader_id.term.to_le_bytes());
        out.extend_from_slice(&self.log_id.leader_id.node_id.to_le_bytes());
        out.extend_from_slice(&self.log_id.index.to_le_bytes());
        match &self.body {
            HeaderBody::Blank => {}
            HeaderBody::Normal { frames } => out.extend_from_slice(&frames.to_le_bytes()),
            HeaderBody::Membership(m) => encode_membership(m, out),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<EntryHeader, HeaderError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(HeaderError("unknown version"));
        }
        let kind = r.u8()?;
        let term = r.u64()?;
        let node_id = r.u64()?;
        let index = r.u64()?;
        let body = match kind {
            0 => HeaderBody::Blank,
            1 => HeaderBody::Normal { frames: r.u32()? },
            2 => HeaderBody::Membership(decode_membership(&mut r)?),
            _ => return Err(HeaderError("unknown entry kind")),
        };
        if !r.0.is_empty() {
            return Err(HeaderError("trailing bytes"));
        }
        Ok(EntryHeader {
            log_id: LogId::new(CommittedLeaderId::new(term, node_id), index),
            body,
        })
    }
}

/// What a Raft snapshot stands for: `meta` (the last log entry it covers, the membership
/// as of it, its id) and the last transaction of the entries it covers (`covered_tx`, 0
/// for none), where the log after it continues. The head of a `raft-snapshot` file and
/// of a snapshot sent to a lagging node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHead {
    pub meta: SnapshotMeta<u64, BasicNode>,
    pub covered_tx: u64,
}

impl SnapshotHead {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        encode_log_id(self.meta.last_log_id.as_ref(), out);
        encode_log_id(self.meta.last_membership.log_id().as_ref(), out);
        encode_membership(self.meta.last_membership.membership(), out);
        let id = self.meta.snapshot_id.as_bytes();
        out.extend_from_slice(&u32::try_from(id.len()).expect("short ids").to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.covered_tx.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotHead, HeaderError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(HeaderError("unknown version"));
        }
        let last_log_id = decode_log_id(&mut r)?;
        let membership_log_id = decode_log_id(&mut r)?;
        let membership = decode_membership(&mut r)?;
        let len = r.count()?;
        let id = std::str::from_utf8(r.take(len)?).map_err(|_| HeaderError("id not UTF-8"))?;
        let covered_tx = r.u64()?;
        if !r.0.is_empty() {
            return Err(HeaderError("trailing bytes"));
        }
        Ok(SnapshotHead {
            meta: SnapshotMeta {
                last_log_id,
                last_membership: StoredMembership::new(membership_log_id, membership),
                snapshot_id: id.to_owned(),
            },
            covered_tx,
        })
    }
}

fn encode_log_id(log_id: Option<&LogId<u64>>, out: &mut Vec<u8>) {
    match log_id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.leader_id.term.to_le_bytes());
            out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
            out.extend_from_slice(&id.index.to_le_bytes());
        }
    }
}

fn decode_log_id(r: &mut Reader<'_>) -> Result<Option<LogId<u64>>, HeaderError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let (term, node_id, index) = (r.u64()?, r.u64()?, r.u64()?);
            Ok(Some(LogId::new(
                CommittedLeaderId::new(term, node_id),
                index,
            )))
        }
        _ => Err(HeaderError("invalid log id tag")),
    }
}

fn encode_membership(m: &Membership<u64, BasicNode>, out: &mut Vec<u8>) {
    let len = |n: usize| u32::try_from(n).expect("membership sizes fit u32");
    let configs = m.get_joint_config();
    out.extend_from_slice(&len(configs.len()).to_le_bytes());
    for config in configs {
        out.extend_from_slice(&len(config.len()).to_le_bytes());
        for id in config {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    out.extend_from_slice(&len(nodes.len()).to_le_bytes());
    for (id, node) in nodes {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&len(node.addr.len()).to_le_bytes());
        out.extend_from_slice(node.addr.as_bytes());
    }
}

fn decode_membership(r: &mut Reader<'_>) -> Result<Membership<u64, BasicNode>, HeaderError> {
    let mut configs = Vec::new();
    for _ in 0..r.count()? {
        let mut config = BTreeSet::new();
        for _ in 0..r.count()? {
            config.insert(r.u64()?);
        }
        configs.push(config);
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..r.count()? {
        let id = r.u64()?;
        let len = r.count()?;
        let addr = r.take(len)?;
        let addr = std::str::from_utf8(addr).map_err(|_| HeaderError("address not UTF-8"))?;
        nodes.insert(id, BasicNode::new(addr));
    }
    Ok(Membership::new(configs, nodes))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        if self.0.len() < n {
            return Err(HeaderError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, HeaderError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, HeaderError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A length or count: bounded by the bytes left, so a corrupt count cannot make
    /// the decoder loop or allocate far beyond the frame.
    fn count(&mut self) -> Result<usize, HeaderError> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(HeaderError("count beyond the frame"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(header: EntryHeader) {
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        assert_eq!(EntryHeader::decode(&bytes), Ok(header));
        for cut in 0..bytes.len() {
            assert!(EntryHeader::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_kind_round_trips_and_a_truncated_header_is_refused() {
        let log_id = LogId::new(CommittedLeaderId::new(7, 2), 41);
        round_trip(EntryHeader {
            log_id,
            body: HeaderBody::Blank,
        });
        round_trip(EntryHeader {
            log_id,
            body: HeaderBody::Normal { frames: 3 },
        });
        let nodes = BTreeMap::from([
            (1, BasicNode::new("127.0.0.1:50051")),
            (2, BasicNode::new("127.0.0.1:50052")),
            (4, BasicNode::new("10.0.0.4:50051")),
        ]);
        let configs = vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 4])];
        round_trip(EntryHeader {
            log_id,
            body: HeaderBody::Membership(Membership::new(configs, nodes)),
        });
    }

    #[test]
    fn a_snapshot_head_round_trips_and_a_truncated_one_is_refused() {
        let nodes = BTreeMap::from([(1, BasicNode::new("a:1")), (3, BasicNode::new("b:3"))]);
        let membership = Membership::new(vec![BTreeSet::from([1, 3])], nodes);
        let head = SnapshotHead {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(4, 3), 900)),
                last_membership: StoredMembership::new(
                    Some(LogId::new(CommittedLeaderId::new(2, 1), 7)),
                    membership,
                ),
                snapshot_id: "4-3-900-123456".into(),
            },
            covered_tx: 123_400,
        };
        let mut bytes = Vec::new();
        head.encode(&mut bytes);
        assert_eq!(SnapshotHead::decode(&bytes), Ok(head));
        for cut in 0..bytes.len() {
            assert!(SnapshotHead::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating() {
        let mut bytes = vec![VERSION, 2];
        bytes.extend_from_slice(&[0; 24]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            EntryHeader::decode(&bytes),
            Err(HeaderError("count beyond the frame"))
        );
    }
}
