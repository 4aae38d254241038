//! crc32c helpers: the `crc32c` crate, spread over threads for large inputs.

/// Payloads at least this large are checksummed on several threads. Below it, handing
/// work to another thread does not pay on a busy 2-core machine: a woken thread can wait a
/// scheduler tick (4 ms) for the other core, longer than one core needs for 16 MiB (3 ms).
const PARALLEL_CRC_MIN_BYTES: usize = 16 << 20;
/// At most this many threads checksum one payload.
const PARALLEL_CRC_THREADS_MAX: usize = 4;

/// crc32c of a payload. A crc32c pass runs at 5-6 GB/s on one core of the project's
/// machine (the `crc32` instruction's throughput), slower than reading the same bytes
/// from the page cache, so large payloads are split across up to
/// [`PARALLEL_CRC_THREADS_MAX`] threads and the partial checksums combined.
pub(crate) fn crc32c_parallel(payload: &[u8]) -> u32 {
    let threads = threads_for(payload.len());
    if threads < 2 {
        return crc32c::crc32c(payload);
    }
    let part_bytes = payload.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = payload.chunks(part_bytes);
        // The first part is checksummed on this thread while the others run.
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts
            .map(|part| (part.len(), scope.spawn(move || crc32c::crc32c(part))))
            .collect();
        let mut crc = crc32c::crc32c(first);
        for (len, handle) in handles {
            let part_crc = match handle.join() {
                Ok(part_crc) => part_crc,
                // A checksum thread cannot panic; if it somehow did, re-raise it here.
                Err(panic) => std::panic::resume_unwind(panic),
            };
            crc = crc32c::crc32c_combine(crc, part_crc, len);
        }
        crc
    })
}

/// How many threads to checksum `len` bytes with (1 = on the calling thread only).
pub(crate) fn threads_for(len: usize) -> usize {
    if len < PARALLEL_CRC_MIN_BYTES {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(PARALLEL_CRC_THREADS_MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parallel_crc_equals_serial() {
        let min = super::PARALLEL_CRC_MIN_BYTES;
        for len in [0, 1, min - 1, min, min + 1, min + 3, 2 * min + 7] {
            let data: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8)
                .collect();
            assert_eq!(
                super::crc32c_parallel(&data),
                crc32c::crc32c(&data),
                "len {len}"
            );
        }
    }
}
