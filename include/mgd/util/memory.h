// How the process's allocator treats freed memory.
//
// A training step allocates and frees the same large tensors every step (activations, their
// gradients, the distiller's maps). glibc's malloc returns freed memory at the top of its heap
// to the kernel once more than twice the largest recent mmap'd block lies free there, and
// serves blocks above its (moving) mmap threshold from fresh mappings; either way the next
// step faults every 4 KiB page in again and the kernel zeroes it. On the Fashion-MNIST pair
// that is ~8 ms of a ~90 ms step, and it grows with every tensor kept alive across a step,
// as the distiller's teacher features are (scripts/bench; README, Performance).
#pragma once

namespace mgd {

/// Keeps freed blocks in the process for reuse: blocks up to 32 MiB come from the heap (not
/// from per-block mappings) and the heap is not trimmed below 1 GiB of free space at its top.
/// Peak memory is unchanged; memory freed after the peak stays mapped (and is reused).
/// Does nothing when the user set MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (glibc's
/// own settings win), when MGD_KEEP_FREED_MEMORY=0, or off glibc. Returns whether it applied.
bool keep_freed_memory();

}  // namespace mgd
