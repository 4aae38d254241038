//! Optional pinning of stage threads to cores (`sched_setaffinity`, Linux only), and
//! their niceness (`setpriority` on the thread id, Linux only).

/// What happened to a stage's pinning request, reported by
/// [`Pipeline::pinning`](crate::Pipeline::pinning).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pinning {
    /// The stage did not ask for a core.
    NotRequested,
    /// The stage thread runs only on `core`.
    Pinned {
        /// The core id.
        core: usize,
    },
    /// The request was skipped and the thread runs unpinned: the core does not exist or
    /// is not in this process's affinity mask, or the platform has no affinity call.
    Skipped {
        /// The core asked for.
        core: usize,
        /// Why it was skipped.
        reason: String,
    },
}

/// Pins the calling thread to `core`, or says why not.
pub(crate) fn pin_current_thread(core: usize) -> Pinning {
    imp::pin_current_thread(core)
}

/// Sets the calling thread's nice value (on Linux a thread has its own). Raising it needs
/// no privilege; lowering it below the process's may be refused, and the thread then
/// keeps the process's: a scheduling hint, never a reason to stop.
pub(crate) fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    imp::set_current_thread_nice(nice)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::Pinning;

    pub(super) fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let who = libc::id_t::try_from(tid).expect("thread ids are positive");
        // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value (Linux).
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    pub(super) fn pin_current_thread(core: usize) -> Pinning {
        // CPU_SETSIZE is the number of cores a cpu_set_t describes.
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
        if core >= max {
            return Pinning::Skipped {
                core,
                reason: format!("core ids must be below {max}"),
            };
        }
        // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty set.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the size and pointer describe `allowed`.
        let rc =
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut allowed) };
        if rc != 0 {
            return Pinning::Skipped {
                core,
                reason: format!("sched_getaffinity: {}", std::io::Error::last_os_error()),
            };
        }
        // SAFETY: `core < CPU_SETSIZE`, checked above, so the bit is inside the set.
        if !unsafe { libc::CPU_ISSET(core, &allowed) } {
            return Pinning::Skipped {
                core,
                reason: "core does not exist or is not in this process's affinity mask".into(),
            };
        }
        // SAFETY: as above: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `core < CPU_SETSIZE`, checked above.
        unsafe { libc::CPU_SET(core, &mut set) };
        // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`.
        let rc =
            unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
        if rc == 0 {
            Pinning::Pinned { core }
        } else {
            Pinning::Skipped {
                core,
                reason: format!("sched_setaffinity: {}", std::io::Error::last_os_error()),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Pinning;

    pub(super) fn set_current_thread_nice(_nice: i32) -> std::io::Result<()> {
        Err(std::io::Error::other(
            "per-thread niceness is implemented on Linux only",
        ))
    }

    pub(super) fn pin_current_thread(core: usize) -> Pinning {
        Pinning::Skipped {
            core,
            reason: "thread pinning is implemented on Linux only".into(),
        }
    }
}
