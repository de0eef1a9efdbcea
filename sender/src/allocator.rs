//! The memory allocator of the static (musl) build, and its settings.
//!
//! musl's own `malloc` takes one lock and keeps no per-thread caches; the
//! sender, which reads, compresses and frees a body per file on several
//! threads, spent 20% to 60% more CPU per file with it than with glibc
//! (docs/platforms.md, "Release binaries"). mimalloc brings most of that
//! back, but as it comes it holds on to freed memory and lets the kernel
//! back it with transparent huge pages: peak RSS went from about 17 to 40
//! MiB. [`tune`] turns those off (no huge pages, freed pages returned at
//! once, arenas committed as used), which keeps the peak near musl's and
//! below glibc's for nearly all of the CPU saved. The binary installs
//! mimalloc as global allocator only where the libc is musl; glibc builds
//! keep glibc's.
//!
//! The settings go through `mi_option_set`, which the `mimalloc` crates do
//! not wrap: the option numbers below are those of the mimalloc sources
//! that `libmimalloc-sys` 0.1.49 builds (pinned in Cargo.toml), and the
//! tests check each against its documented default.

use std::ffi::{c_int, c_long};

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// `mi_option_arena_eager_commit`: 0 commits arena memory as it is used.
const ARENA_EAGER_COMMIT: c_int = 4;
/// `mi_option_purge_delay` in milliseconds: 0 returns freed pages at once.
const PURGE_DELAY: c_int = 15;
/// `mi_option_allow_thp`: 0 asks the kernel for no transparent huge pages.
const ALLOW_THP: c_int = 43;

/// The allocator the static build installs (`main.rs`).
pub use mimalloc::MiMalloc as Allocator;

/// Sets mimalloc's memory-returning options; first thing in `main`, before
/// the runtime's threads allocate. Harmless where mimalloc is linked but
/// not the global allocator.
pub fn tune() {
    // SAFETY: mi_option_set stores a value in mimalloc's option table; it
    // takes any option number below _mi_option_last, as these are.
    unsafe {
        mi_option_set(ALLOW_THP, 0);
        mi_option_set(PURGE_DELAY, 0);
        mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each number names the option meant: its default is the one the
    /// mimalloc sources document (an off-by-one would read a neighbour's,
    /// e.g. purge_decommits' 1 or use_numa_nodes' 0); then `tune` sets
    /// all three. One test: the options are one table for the process.
    #[test]
    fn option_numbers_name_the_options_meant_and_tune_sets_them() {
        // SAFETY: reading options is always allowed.
        unsafe {
            assert_eq!(mi_option_get(ARENA_EAGER_COMMIT), 2, "arena_eager_commit");
            assert_eq!(mi_option_get(PURGE_DELAY), 1000, "purge_delay");
            assert_eq!(mi_option_get(ALLOW_THP), 1, "allow_thp");
        }
        tune();
        // SAFETY: as above.
        unsafe {
            assert_eq!(mi_option_get(ARENA_EAGER_COMMIT), 0);
            assert_eq!(mi_option_get(PURGE_DELAY), 0);
            assert_eq!(mi_option_get(ALLOW_THP), 0);
        }
    }
}
