//! What this process costs the machine: CPU time (user + system) and peak resident memory,
//! from `getrusage`; and where the `ledger-server` binary the benches start is.

use std::path::PathBuf;
use std::time::Duration;

/// A reading of the process's resource use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time of every thread so far.
    pub cpu: Duration,
    /// The peak resident set size so far, in bytes.
    pub peak_rss_bytes: u64,
}

/// Reads the process's usage now.
pub fn usage() -> Usage {
    // SAFETY: getrusage writes a rusage into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux reports ru_maxrss in KiB.
        peak_rss_bytes: ru.ru_maxrss as u64 * 1024,
    }
}

/// The current resident set size in bytes (`/proc/self/statm`), if readable.
pub fn current_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The `ledger-server` binary: `$LEDGER_SERVER_BIN`, else the one cargo built beside
/// this executable (a test runs from `deps/`, one level further down).
pub fn server_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("LEDGER_SERVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe.parent().ok_or("no executable directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("ledger-server");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: build it with the same profile (cargo build [--release] -p ledger-server) or set LEDGER_SERVER_BIN",
            bin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_grows_with_work_and_memory() {
        let before = usage();
        let mut v = vec![0u8; 64 << 20];
        // Touch every page so it becomes resident.
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box((x, &v));
        let after = usage();
        assert!(after.cpu > before.cpu);
        assert!(after.peak_rss_bytes >= 64 << 20);
        assert!(current_rss_bytes().unwrap() >= 64 << 20);
    }
}
