"""Limits on the native thread pools (OpenMP, BLAS) of this process.

scikit-learn's tree ensembles and nearest neighbours, and the BLAS under NumPy and SciPy, start
threads of their own per call. Where the cores are already busy (JAX's threads, other processes)
those threads spin and contend: gradient-boosted prediction ran 13x slower with the default
threads than with one on 2 loaded cores. The detector's work is independent per object: it
scales by processes (`--dask`) and, within one, by Python threads over slices of rows.

`map_row_slices` runs a large batch as one slice of rows a core, each slice's estimators on one
thread: their loops release the GIL, so the slices run side by side without spinning, and give
the same numbers as the batch in one piece (the detector's components, the feature
normalisation: 1.9x at 16,384 rows on 2 cores; nothing at 1,500, where per-call work holding the
GIL dominates).

The BLAS limit holds for the whole process, not for one thread: code that runs several threads
sets it once around all of them (`Detector.out_of_fold`), else one thread's restore lifts
another's limit. OpenMP's (libgomp's) is the other way round, per thread: the threads of a pool
set their own (`one_openmp_thread`; without it each slice's trees used every core: the run's
`gp_classifier` predicting 16,384 rows in two slices took 1.04-1.16x as long on 2 quiet cores,
more where the cores are busy; found by a review).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from threadpoolctl import ThreadpoolController


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The pools, looked up once, at the first limit (a lookup walks the loaded libraries: 6 ms,
    more than a small night of `replay` spends in some components). The callers have imported
    scikit-learn and SciPy by then (the detector's components), so their pools are among them."""
    return ThreadpoolController()


def limited_threads(limit: int | None) -> AbstractContextManager[Any]:
    """The native pools limited to `limit` threads while in the context (None: unchanged)."""
    return _thread_pools().limit(limits=limit)


def single_threaded() -> AbstractContextManager[Any]:
    """One thread for scikit-learn's OpenMP and the BLAS while in the context (the detector):
    OpenMP's in the calling thread only (`one_openmp_thread` for a pool's threads)."""
    return limited_threads(1)


def one_openmp_thread() -> None:
    """One OpenMP thread for the calling thread, for the rest of its life: a pool's initializer
    (`ThreadPoolExecutor(initializer=one_openmp_thread)`), whose threads a `single_threaded`
    around the pool does not reach."""
    _thread_pools().limit(limits=1, user_api="openmp")


Result = TypeVar("Result")


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_row_slices(function: Callable[[slice], Result], n: int, min_rows: int) -> list[Result]:
    """`function` of each slice of `n` rows, in order: one contiguous slice a core, side by side,
    each of at least `min_rows` rows (below it, threads cost more than they save: one slice)."""
    k = max(1, min(cores(), n // max(min_rows, 1)))
    bounds = [n * i // k for i in range(k + 1)]
    slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]
    if k == 1:
        return [function(slices[0])]
    with ThreadPoolExecutor(k, initializer=one_openmp_thread) as pool:
        return list(pool.map(function, slices))
