//! Entries on the wire between nodes: the WAL's own header frame payload and the records
//! frames, so the network carries exactly what the log stores.

use super::entry_format::{EntryHeader, HeaderBody, HeaderError, SnapshotHead};
use super::types::{Entry, Frames};
use crate::ledger::replica::EncodedFrame;
use openraft::EntryPayload;

/// An entry that did not decode.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("entry {index}: its header announces {announced} frames, {got} came")]
    Frames {
        index: u64,
        announced: u32,
        got: usize,
    },
    #[error("entry {index}: a frame of {count} records starting at {first_tx_id} is invalid")]
    Frame {
        index: u64,
        first_tx_id: u64,
        count: u32,
    },
}

/// The header bytes of `entry` (its frames travel beside them).
pub fn entry_header(entry: &Entry, out: &mut Vec<u8>) {
    let body = match &entry.payload {
        EntryPayload::Blank => HeaderBody::Blank,
        EntryPayload::Membership(m) => HeaderBody::Membership(m.clone()),
        EntryPayload::Normal(frames) => HeaderBody::Normal {
            frames: u32::try_from(frames.0.len()).expect("< 2^32 frames per entry"),
        },
    };
    EntryHeader {
        log_id: entry.log_id,
        body,
    }
    .encode(out);
}

/// The entry of a header and its frames, checked against each other.
pub fn entry_from_wire(header: &[u8], frames: Vec<EncodedFrame>) -> Result<Entry, WireError> {
    let header = EntryHeader::decode(header)?;
    let index = header.log_id.index;
    let payload = match header.body {
        HeaderBody::Blank | HeaderBody::Membership(_) if !frames.is_empty() => {
            return Err(WireError::Frames {
                index,
                announced: 0,
                got: frames.len(),
            });
        }
        HeaderBody::Blank => EntryPayload::Blank,
        HeaderBody::Membership(m) => EntryPayload::Membership(m),
        HeaderBody::Normal { frames: announced } => {
            if frames.len() != announced as usize || frames.is_empty() {
                return Err(WireError::Frames {
                    index,
                    announced,
                    got: frames.len(),
                });
            }
            let mut next = frames[0].first_tx_id;
            for f in &frames {
                if f.count == 0 || f.first_tx_id != next || f.first_tx_id == 0 {
                    return Err(WireError::Frame {
                        index,
                        first_tx_id: f.first_tx_id,
                        count: f.count,
                    });
                }
                next = f.first_tx_id + u64::from(f.count);
            }
            EntryPayload::Normal(Frames(frames.into()))
        }
    };
    Ok(Entry {
        log_id: header.log_id,
        payload,
    })
}

/// A Raft snapshot's meta on the wire (the InstallSnapshot RPC).
pub fn snapshot_meta_to_wire(meta: &openraft::SnapshotMeta<u64, openraft::BasicNode>) -> Vec<u8> {
    let mut out = Vec::new();
    SnapshotHead {
        meta: meta.clone(),
        covered_tx: 0,
    }
    .encode(&mut out);
    out
}

/// The meta [`snapshot_meta_to_wire`] encoded.
pub fn snapshot_meta_from_wire(
    bytes: &[u8],
) -> Result<openraft::SnapshotMeta<u64, openraft::BasicNode>, WireError> {
    Ok(SnapshotHead::decode(bytes)?.meta)
}
