//! The global allocator of the `infermesh` binary: mimalloc, entered through its plain
//! `malloc`-style functions whenever the layout allows it.
//!
//! The `mimalloc` crate's `MiMalloc` sends every allocation through
//! `mi_malloc_aligned(size, align)`. Its fast path only serves blocks of at most 1 KiB
//! whose free-list head happens to be aligned; anything larger (request and response
//! buffers, header maps, tensors) goes through a generic aligned path first. For the
//! alignments Rust asks for almost always (at most 16 bytes), plain `mi_malloc` gives
//! the same guarantee without those detours, exactly like the standard library's
//! `System` allocator does with `malloc`. Larger alignments (tract's SIMD buffers) still
//! take `mi_malloc_aligned`.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use libmimalloc_sys as ffi;

/// The alignment every `mi_malloc` block of at least this size has. mimalloc is a
/// conforming `malloc` (it is used as a drop-in replacement for the C library's): its
/// blocks are aligned to `MI_MAX_ALIGN_SIZE`, which is 16 (`sizeof(max_align_t)`) on
/// the 64-bit targets we build for, except blocks of 8 bytes or less, which are
/// aligned to 8 (its size classes below 64 bytes are whole multiples of 16, and the
/// 8-byte class is the only one under 16). Hence the rule, the same as the standard
/// library's for `malloc`: `align <= MIN_ALIGN && align <= size` is served by
/// `mi_malloc`.
const MIN_ALIGN: usize = 16;

/// mimalloc behind the `GlobalAlloc` interface; `#[global_allocator]` it once, in the
/// binary.
pub struct Allocator;

/// Whether `mi_malloc(size)` already returns memory aligned to `align`: see
/// [`MIN_ALIGN`]. (`size` is never 0 here: `GlobalAlloc` callers never ask for a
/// zero-sized block.)
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every method returns either null (mimalloc's out-of-memory answer, which
// `GlobalAlloc` allows) or a block from mimalloc of at least `size` bytes aligned to
// `layout.align()`: through `mi_malloc`/`mi_zalloc`/`mi_realloc` only when `plain`
// holds (see `MIN_ALIGN` for why that alignment is guaranteed), otherwise through the
// `_aligned` variants, which take the alignment as an argument. Every block is freed
// with `mi_free`, which accepts blocks from all of these functions.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            // SAFETY: `mi_malloc` has no preconditions; alignment: see `plain`.
            unsafe { ffi::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: `layout.align()` is a power of two, as `mi_malloc_aligned` needs.
            unsafe { ffi::mi_malloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            // SAFETY: `mi_zalloc` has no preconditions; alignment: see `plain`.
            unsafe { ffi::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: `layout.align()` is a power of two, as `mi_zalloc_aligned` needs.
            unsafe { ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned, i.e. one from
        // mimalloc, which `mi_free` releases whichever function allocated it.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(new_size, layout.align()) {
            // SAFETY: `ptr` is a live mimalloc block (the caller's contract);
            // `mi_realloc` keeps the contents up to the smaller size, and a block of
            // `new_size` bytes is aligned to `layout.align()` (see `plain`).
            unsafe { ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: as above, with the alignment passed to mimalloc.
            unsafe {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 byte to 64 KiB at every alignment up to 4 KiB comes back
    /// aligned and writable over its whole length, zeroed when asked, and keeps its
    /// contents through growing and shrinking `realloc`s.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Allocator;
        let mut sizes: Vec<usize> = (1..=256).collect();
        sizes.extend([1000, 1024, 1025, 4096, 10_000, 65_536]);
        for &size in &sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: every layout has a non-zero size; each block is used only
                // within its current size and freed once, with its current layout.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed: size {size} align {align}");
                    assert!((0..size).all(|i| z.add(i).read() == 0));
                    a.dealloc(z, layout);

                    let mut p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    for new_size in [size / 2 + 1, size * 3] {
                        let q = a.realloc(p, layout, new_size);
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "{size} -> {new_size}, align {align}");
                        let kept = size.min(new_size);
                        assert!((0..kept).all(|i| q.add(i).read() == i as u8));
                        // Back to `size`, refilled, for the next `new_size`.
                        let grown = Layout::from_size_align(new_size, align).unwrap();
                        p = a.realloc(q, grown, size);
                        assert_eq!(p as usize % align, 0, "{new_size} -> {size}, align {align}");
                        for i in 0..size {
                            p.add(i).write(i as u8);
                        }
                    }
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
