//! The synchronisation primitives the ring and the notifiers use: std's in normal builds
//! (plain re-exports, so the generated code is the same as naming std directly), loom's
//! under `RUSTFLAGS="--cfg loom"`, where the model checks in `src/loom.rs` explore every
//! interleaving and every weak-memory outcome the orderings allow.
//!
//! Only what the protocol's correctness depends on goes through here: the atomics, the
//! notifiers' mutex, and parking. The slots' `UnsafeCell` stays std's: the models put a
//! loom cell inside the slot type instead, which checks the same hand-overs.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current, yield_now};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current, yield_now};

/// The spin-loop hint; under loom a yield, so that a spinning model thread lets the
/// others run.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::hint::spin_loop();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Parks the current thread for at most `timeout`. Loom has no clock: there it parks until
/// unparked, so a lost wake-up shows as a deadlock instead of hiding behind the timeout.
#[inline]
pub(crate) fn park_timeout(timeout: std::time::Duration) {
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
    #[cfg(not(loom))]
    std::thread::park_timeout(timeout);
}
