//! Reads of durable transactions: the recent frames in memory, the sparse index of the
//! WAL on disk, and the session that reads a record from either with one decode path.

pub(crate) mod frame;
pub(crate) mod index;
pub(crate) mod recent;
pub(crate) mod source;
