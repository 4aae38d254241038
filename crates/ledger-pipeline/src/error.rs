//! The one error type of this crate.

use std::sync::Arc;

/// What a stage handler returns when it cannot go on. Any error type converts into it.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stage's error kept whole and shared, so every clone of the failure can downcast it.
pub type SharedStageError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a producer, a waiter or the owner of a pipeline can be told.
///
/// The variants that describe the death of the pipeline ([`PipelineError::StageFailed`],
/// [`PipelineError::ProducerPanicked`]) are recorded once, at the first failure, and then
/// handed (cloned) to every producer and waiter that asks afterwards, and to
/// [`Pipeline::shutdown`](crate::Pipeline::shutdown).
///
/// Equality compares what the variants say, not the identity of a kept source error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// `try_publish`: the ring has no free slot (the last stage has not released it yet).
    /// Nothing was claimed; retry later. This is the backpressure signal.
    #[error("ring is full: {capacity} slots all in flight")]
    Full {
        /// The ring's capacity.
        capacity: usize,
    },

    /// The pipeline was shut down (or is shutting down): no new publish is accepted, and a
    /// waiter asked for a level that the drained stage never reached.
    #[error("pipeline is shut down")]
    ShutDown,

    /// A stage handler returned an error or panicked; the pipeline stopped.
    #[error("stage {stage:?} failed{}: {message}", if *.panicked { " (panic)" } else { "" })]
    StageFailed {
        /// The name the stage was registered with.
        stage: String,
        /// The error's `Display`, or the panic payload if it was a string.
        message: String,
        /// Whether the handler panicked (rather than returned `Err`).
        panicked: bool,
        /// The handler's error itself (`None` for a panic), so that the owner can tell a
        /// checksum error from a full disk by downcasting instead of parsing `message`.
        #[source]
        source: Option<SharedStageError>,
    },

    /// A producer's fill closure panicked after claiming `sequence`: the slot can never be
    /// published, so the pipeline stopped rather than wait for it forever.
    #[error("producer panicked while filling sequence {sequence}")]
    ProducerPanicked {
        /// The first sequence of the claim that was never published.
        sequence: u64,
    },

    /// A batch publish asked for `requested` slots: zero, or more than the ring holds.
    #[error("batch of {requested} slots is not publishable: must be 1..={capacity}")]
    InvalidBatchSize {
        /// Slots asked for.
        requested: usize,
        /// The ring's capacity.
        capacity: usize,
    },

    /// A wait with a timeout expired before the stage reached the level.
    #[error("timed out waiting for stage index {target}")]
    Timeout {
        /// The sequence waited for.
        target: u64,
    },

    /// The builder was given an impossible configuration.
    #[error("invalid pipeline configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: &'static str,
    },

    /// A stage thread could not be spawned.
    #[error("could not spawn the thread of stage {stage:?}: {message}")]
    Spawn {
        /// The stage.
        stage: String,
        /// The OS error.
        message: String,
    },
}

impl PipelineError {
    /// The error a failed stage handler returned, if this is such a failure.
    pub fn stage_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            PipelineError::StageFailed {
                source: Some(source),
                ..
            } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl PartialEq for PipelineError {
    fn eq(&self, other: &Self) -> bool {
        use PipelineError::*;
        match (self, other) {
            (Full { capacity: a }, Full { capacity: b }) => a == b,
            (ShutDown, ShutDown) => true,
            (
                StageFailed {
                    stage: s1,
                    message: m1,
                    panicked: p1,
                    ..
                },
                StageFailed {
                    stage: s2,
                    message: m2,
                    panicked: p2,
                    ..
                },
            ) => s1 == s2 && m1 == m2 && p1 == p2,
            (ProducerPanicked { sequence: a }, ProducerPanicked { sequence: b }) => a == b,
            (
                InvalidBatchSize {
                    requested: r1,
                    capacity: c1,
                },
                InvalidBatchSize {
                    requested: r2,
                    capacity: c2,
                },
            ) => r1 == r2 && c1 == c2,
            (Timeout { target: a }, Timeout { target: b }) => a == b,
            (InvalidConfig { reason: a }, InvalidConfig { reason: b }) => a == b,
            (
                Spawn {
                    stage: s1,
                    message: m1,
                },
                Spawn {
                    stage: s2,
                    message: m2,
                },
            ) => s1 == s2 && m1 == m2,
            _ => false,
        }
    }
}

impl Eq for PipelineError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct Fire;

    #[test]
    fn stage_failure_keeps_a_downcastable_source() {
        let boxed: StageError = Box::new(Fire);
        let failure = PipelineError::StageFailed {
            stage: "wal".into(),
            message: boxed.to_string(),
            panicked: false,
            source: Some(Arc::from(boxed)),
        };
        let copy = failure.clone();
        assert!(
            copy.stage_source()
                .unwrap()
                .downcast_ref::<Fire>()
                .is_some()
        );
        assert!(std::error::Error::source(&copy).is_some());
        assert_eq!(failure, copy);
        assert_eq!(PipelineError::ShutDown.stage_source().map(|_| ()), None);
    }
}
