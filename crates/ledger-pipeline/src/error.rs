//! The one error type of this crate.

/// What a stage handler returns when it cannot go on. Any error type converts into it.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a producer, a waiter or the owner of a pipeline can be told.
///
/// The variants that describe the death of the pipeline ([`PipelineError::StageFailed`],
/// [`PipelineError::ProducerPanicked`]) are recorded once, at the first failure, and then
/// handed (cloned) to every producer and waiter that asks afterwards, and to
/// [`Pipeline::shutdown`](crate::Pipeline::shutdown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
