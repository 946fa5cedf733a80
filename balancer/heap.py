"""Keep each cycle's large buffers out of the long-lived heap (glibc only).

glibc serves a request above its mmap threshold (128 KiB at start) from a mapping of its
own, returned to the system on free. But freeing such a buffer *raises* the threshold to its
size, up to 32 MiB: from then on a 50,000-guest cycle's 17 MiB `/cluster/resources` answer,
and every list and dict sized by the guest count, comes from the main heap instead, where
fragmentation keeps it. The worker's RSS then grew by 16 MiB over 30 minutes of cycles
(`benchmarks/cycle_bench.py --soak 360`), none of it live Python objects (tracemalloc holds
flat) and most of it given back by `malloc_trim`. Fixing the threshold turns the dynamic
adjustment off (mallopt(3)): the same soak starts 14 MiB lower, rises by 3 MiB over its
first 60 cycles and then stays within 130-133 MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("balancer.heap")

#: mallopt(3) parameter number of M_MMAP_THRESHOLD in glibc's malloc.h.
M_MMAP_THRESHOLD = -3
#: Above glibc's 128 KiB start, below anything sized by the cluster.
MMAP_THRESHOLD = 256 * 1024


def keep_large_buffers_off_the_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc (nothing to do:
    musl and others do not move the threshold)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None) if libc is not None else None
        if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
            return False
        done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    except OSError:
        return False
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done
