//! [`advise_huge_pages`]: a hint that a large table read at random should be backed by
//! 2 MiB pages.

/// Asks the kernel to back the not yet touched pages of `table`'s allocation (its whole
/// capacity) with transparent huge pages, where it offers them
/// (`madvise` mode). A table read at random misses the TLB with most cache misses on 4 KiB
/// pages (a 1M-account balance table is 2,048 of them, 4 huge pages), and a prefetch that
/// misses the TLB stalls on the page walk it was meant to hide. Only the whole 2 MiB
/// pages inside the allocation are advised; failure (THP disabled) changes nothing.
pub fn advise_huge_pages<T>(table: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = table.as_ptr() as usize;
        let end = start + table.capacity() * size_of::<T>();
        let aligned = start.next_multiple_of(HUGE);
        if end > aligned + HUGE {
            // SAFETY: the range lies inside the Vec's allocation; MADV_HUGEPAGE only
            // changes how its not yet touched pages are backed, never their contents.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    (end - aligned) / HUGE * HUGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = table;
}
