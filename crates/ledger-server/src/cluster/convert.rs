//! The Raft RPC messages between openraft's types and `raft.proto`'s.

use ledger_core::cluster::openraft::error::{InstallSnapshotError, SnapshotMismatch};
use ledger_core::cluster::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ledger_core::cluster::openraft::{CommittedLeaderId, LogId, SnapshotSegmentId, Vote};
use ledger_core::cluster::{
    EncodedFrame, NodeId, TypeConfig, entry_from_wire, entry_header, snapshot_meta_from_wire,
    snapshot_meta_to_wire,
};
use tonic::Status;

use crate::pb::cluster as pb;

fn vote_to(v: &Vote<NodeId>) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

/// Terms beyond this are refused: no cluster gets near it, and a vote saved with a term
/// at `u64::MAX` would leave no next term to elect a leader in.
const TERM_MAX: u64 = 1 << 62;

fn vote_from(v: Option<pb::Vote>) -> Result<Vote<NodeId>, Status> {
    let v = v.ok_or_else(|| Status::invalid_argument("a Raft message without its vote"))?;
    if v.term > TERM_MAX {
        return Err(Status::invalid_argument(format!(
            "a Raft vote of term {} (at most {TERM_MAX})",
            v.term
        )));
    }
    let mut vote = Vote::new(v.term, v.node_id);
    vote.committed = v.committed;
    Ok(vote)
}

fn log_id_to(l: &LogId<NodeId>) -> pb::LogId {
    pb::LogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

fn log_id_from(l: pb::LogId) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(l.term, l.node_id), l.index)
}

pub fn append_request_to(r: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    let entries = r
        .entries
        .iter()
        .map(|e| {
            let mut header = Vec::new();
            entry_header(e, &mut header);
            let frames = match &e.payload {
                ledger_core::cluster::openraft::EntryPayload::Normal(frames) => frames
                    .0
                    .iter()
                    .map(|f| pb::Frame {
                        first_tx_id: f.first_tx_id,
                        count: f.count,
                        payload: f.payload.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            pb::Entry { header, frames }
        })
        .collect();
    pb::AppendEntriesRequest {
        vote: Some(vote_to(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to),
        entries,
        leader_commit: r.leader_commit.as_ref().map(log_id_to),
    }
}

pub fn append_request_from(
    r: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, Status> {
    let entries = r
        .entries
        .into_iter()
        .map(|e| {
            let frames = e
                .frames
                .into_iter()
                .map(|f| EncodedFrame {
                    first_tx_id: f.first_tx_id,
                    count: f.count,
                    payload: f.payload,
                })
                .collect();
            entry_from_wire(&e.header, frames).map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(AppendEntriesRequest {
        vote: vote_from(r.vote)?,
        prev_log_id: r.prev_log_id.map(log_id_from),
        entries,
        leader_commit: r.leader_commit.map(log_id_from),
    })
}

pub fn append_response_to(r: &AppendEntriesResponse<NodeId>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match r {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(pb::PartialSuccess {
            matching: m.as_ref().map(log_id_to),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Empty {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

pub fn append_response_from(
    r: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<NodeId>, Status> {
    use pb::append_entries_response::Result as R;
    Ok(match r.result {
        Some(R::Success(_)) => AppendEntriesResponse::Success,
        Some(R::PartialSuccess(p)) => {
            AppendEntriesResponse::PartialSuccess(p.matching.map(log_id_from))
        }
        Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
        Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(vote_from(Some(v))?),
        None => return Err(Status::internal("an AppendEntries answer without a result")),
    })
}

pub fn vote_request_to(r: &VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to),
    }
}

pub fn vote_request_from(r: pb::VoteRequest) -> Result<VoteRequest<NodeId>, Status> {
    Ok(VoteRequest {
        vote: vote_from(r.vote)?,
        last_log_id: r.last_log_id.map(log_id_from),
    })
}

pub fn vote_response_to(r: &VoteResponse<NodeId>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_to),
    }
}

pub fn vote_response_from(r: pb::VoteResponse) -> Result<VoteResponse<NodeId>, Status> {
    Ok(VoteResponse {
        vote: vote_from(r.vote)?,
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.map(log_id_from),
    })
}

/// A snapshot chunk, its data moved (up to `snapshot_max_chunk_size`, 3 MiB).
pub fn install_request_to(r: InstallSnapshotRequest<TypeConfig>) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to(&r.vote)),
        meta: snapshot_meta_to_wire(&r.meta),
        offset: r.offset,
        data: r.data,
        done: r.done,
    }
}

pub fn install_request_from(
    r: pb::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, Status> {
    let meta = snapshot_meta_from_wire(&r.meta)
        .map_err(|e| Status::invalid_argument(format!("a snapshot's meta: {e}")))?;
    Ok(InstallSnapshotRequest {
        vote: vote_from(r.vote)?,
        meta,
        offset: r.offset,
        data: r.data,
        done: r.done,
    })
}

fn segment_to(s: &SnapshotSegmentId) -> pb::SnapshotSegment {
    pb::SnapshotSegment {
        snapshot_id: s.id.clone(),
        offset: s.offset,
    }
}

fn segment_from(s: Option<pb::SnapshotSegment>) -> Result<SnapshotSegmentId, Status> {
    let s = s.ok_or_else(|| Status::internal("a snapshot mismatch without its segments"))?;
    Ok(SnapshotSegmentId {
        id: s.snapshot_id,
        offset: s.offset,
    })
}

/// The answer to a chunk: this node's vote, or the chunk it expected instead.
pub fn install_response_to(
    r: &Result<InstallSnapshotResponse<NodeId>, InstallSnapshotError>,
) -> pb::InstallSnapshotResponse {
    use pb::install_snapshot_response::Result as R;
    let result = match r {
        Ok(r) => R::Vote(vote_to(&r.vote)),
        Err(InstallSnapshotError::SnapshotMismatch(m)) => R::Mismatch(pb::SnapshotMismatch {
            expect: Some(segment_to(&m.expect)),
            got: Some(segment_to(&m.got)),
        }),
    };
    pb::InstallSnapshotResponse {
        result: Some(result),
    }
}

pub fn install_response_from(
    r: pb::InstallSnapshotResponse,
) -> Result<Result<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, Status> {
    use pb::install_snapshot_response::Result as R;
    Ok(match r.result {
        Some(R::Vote(v)) => Ok(InstallSnapshotResponse {
            vote: vote_from(Some(v))?,
        }),
        Some(R::Mismatch(m)) => Err(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: segment_from(m.expect)?,
            got: segment_from(m.got)?,
        })),
        None => {
            return Err(Status::internal(
                "an InstallSnapshot answer without a result",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_with_a_term_past_the_limit_is_refused() {
        let vote = |term| {
            vote_request_from(pb::VoteRequest {
                vote: Some(pb::Vote {
                    term,
                    node_id: 2,
                    committed: false,
                }),
                last_log_id: None,
            })
        };
        assert!(vote(7).is_ok());
        assert_eq!(
            vote(u64::MAX).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let missing = vote_request_from(pb::VoteRequest {
            vote: None,
            last_log_id: None,
        });
        assert_eq!(missing.unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn append_requests_round_trip_and_a_frame_gap_is_refused() {
        use ledger_core::cluster::openraft::EntryPayload;
        use ledger_core::cluster::{Entry, Frames};
        let frame = |first_tx_id, count| EncodedFrame {
            first_tx_id,
            count,
            payload: vec![1u8, 2, 3].into(),
        };
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 9),
            payload: EntryPayload::Normal(Frames(vec![frame(10, 2), frame(12, 1)].into())),
        };
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 8)),
            entries: vec![entry.clone()],
            leader_commit: None,
        };
        let wire = append_request_to(&request);
        let back = append_request_from(wire.clone()).unwrap();
        assert_eq!(back.entries[0].log_id, entry.log_id);
        assert_eq!(back.prev_log_id, request.prev_log_id);
        let mut gap = wire;
        gap.entries[0].frames[1].first_tx_id = 20;
        assert_eq!(
            append_request_from(gap).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn snapshot_chunks_and_their_answers_round_trip() {
        use ledger_core::cluster::openraft::{
            BasicNode, Membership, SnapshotMeta, StoredMembership,
        };
        let members = [(1, "a:1"), (2, "b:2"), (4, "d:4")]
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect::<std::collections::BTreeMap<NodeId, BasicNode>>();
        let membership = Membership::new(vec![[1, 2, 4].into()], members);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(5, 2), 90)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(4, 1), 60)),
                membership,
            ),
            snapshot_id: "5-2-90-7".into(),
        };
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(5, 2),
            meta: meta.clone(),
            offset: 3 << 20,
            data: vec![9; 1000],
            done: true,
        };
        let back = install_request_from(install_request_to(request.clone())).unwrap();
        assert_eq!(back, request);

        // A chunk with an unreadable meta, or no vote, is refused.
        let mut bad = install_request_to(request.clone());
        bad.meta.truncate(3);
        assert_eq!(
            install_request_from(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut bad = install_request_to(request);
        bad.vote = None;
        assert_eq!(
            install_request_from(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );

        let took = Ok(InstallSnapshotResponse {
            vote: Vote::new_committed(6, 3),
        });
        assert_eq!(
            install_response_from(install_response_to(&took)).unwrap(),
            took
        );
        let mismatch = Err(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "5-2-90-7".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "5-2-90-7".into(),
                offset: 3 << 20,
            },
        }));
        assert_eq!(
            install_response_from(install_response_to(&mismatch)).unwrap(),
            mismatch
        );
        let empty = pb::InstallSnapshotResponse { result: None };
        assert_eq!(
            install_response_from(empty).unwrap_err().code(),
            tonic::Code::Internal
        );
    }
}
