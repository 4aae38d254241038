//! The ledger's load generator (`cargo run --release -p ledger-bench --bin load -- --help`).
//!
//! - [`workload`]: deterministic operation streams (transfers, deposits, composites).
//! - [`process`]: what the process costs the machine (CPU time, peak RSS).
//! - [`crash`]: the crash matrix: a real server killed and restarted, acknowledgements checked.
//! - [`latency`]: submit-to-level latency, recorded off the producers' threads.
//! - [`cluster`]: real-process cluster tests: failover timed, partitions, logs compared.
//! - [`proxy`]: the TCP proxy between cluster nodes that cuts and delays their links.
//!
//! Figures measured with it live in `docs/benchmarks.md`, with the command and the load.

pub mod cluster;
pub mod crash;
pub mod latency;
pub mod process;
pub mod proxy;
pub mod workload;
