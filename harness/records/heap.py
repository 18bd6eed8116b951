"""The C heap's policy for large blocks: freed temporaries go back to the system.

Set once by the commands that process data (``harness.cli``'s ``_dispatch``, before TensorFlow), not
at the CLI's import (``harness.records`` imports numpy).

glibc's malloc maps each block above its mmap threshold (128 KB) on its own and unmaps it when freed,
but raises that threshold, up to 32 MB, each time it frees such a block: from then on the temporaries
of a pass in chunks (a few MB each: ``records.row_chunks``, a chunk's frame in ``metrics.score``, an
arrow row group), allocated on several threads, come from its heaps, which fragment and keep their
pages. Fixing the threshold (as the ``MALLOC_MMAP_THRESHOLD_`` variable would) keeps peak memory flat
in the number of samples: ``benchmarks/memory.py`` measured 1M / 100k samples at 1.27 and 1.33 with
the default, 1.13 with it fixed at 128 KB or at 1 MB (``MMAP_THRESHOLD_BYTES``).

>>> fix_mmap_threshold()  # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import ctypes.util

# 1 MB: a chunk's copy (records.CHUNK_BYTES) and anything larger is mapped and given back when freed;
# smaller blocks stay in the heaps, reused at once. Each fresh mapping's pages fault in: scoring and
# writing took 1.21-1.24x as long with 128 KB fixed, 1.01-1.18x with 1 MB (benchmarks/heap_time.py);
# memory.py: 1.13 at 128 KB, 1.13 at 1 MB, 1.17 at 4 MB (anonymous 1.15, 1.17, 1.25)
MMAP_THRESHOLD_BYTES = 1 << 20
M_MMAP_THRESHOLD = -3              # mallopt()'s parameter number for it (<malloc.h>)


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes`` for this process (True); False where the C
    library has no ``mallopt`` (macOS) or refuses (musl's does nothing): nothing is changed then."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
