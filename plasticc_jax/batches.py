"""Gridded arrays to the model: `model_inputs` turns them into the model's host-side inputs
(validated, features normalised) and `padded_batches` cuts those into fixed-shape batches. Every
place that feeds the model (training, validation, the inference API) goes through these two.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from plasticc_jax import gridding, plasticc
from plasticc_jax.dataset import FeatureStats, LightCurveArrays
from plasticc_jax.errors import UserError

# Smallest padded batch: a few compiled shapes serve inputs of any size.
MIN_PADDED_BATCH = 64

ArraysLike = LightCurveArrays | Mapping[str, np.ndarray]


def model_inputs(batch: ArraysLike, stats: FeatureStats, n_times: int) -> dict[str, np.ndarray]:
    """Validate gridded arrays and normalise their features: the model's host-side inputs.

    Args:
        batch: `LightCurveArrays`, or a mapping with `flux`, `flux_err`, `mask`
            (n, n_bands, n_times) in the scaled-flux units of prepare, and raw `features`
            (n, n_features) in the order of `stats.names`, or every feature of a prepared
            dataset (`gridding.FEATURE_NAMES`, of which those are read).
        stats: the run's feature normalisation.
        n_times: time bins of the run's grid.

    Returns:
        `flux`, `flux_err` float32 and `mask` bool (n, n_bands, n_times); `features` float32
        (n, n_features), normalised.

    Raises:
        UserError: a missing array, a shape that does not fit the run, values that are not
            numbers, a mask of other values than 0/1, or an observed cell with a non-finite flux
            or an error that is not a positive finite number.
    """
    names = ("flux", "flux_err", "mask", "features")
    if isinstance(batch, pd.DataFrame):
        raise UserError(
            "encoder input is a DataFrame: a table of observations goes to "
            "`encoder.encode_table`; the encoder itself takes LightCurveArrays or a dict with "
            "flux, flux_err, mask, features"
        )
    if isinstance(batch, Mapping):
        missing = [name for name in names if name not in batch]
    else:
        missing = [name for name in names if not hasattr(batch, name)]
    if missing:
        kind = "a dict" if isinstance(batch, Mapping) else f"a {type(batch).__name__}"
        raise UserError(
            f"encoder input is {kind} without {', '.join(missing)}: pass LightCurveArrays or a "
            "dict with flux, flux_err, mask, features"
        )
    get = batch.__getitem__ if isinstance(batch, Mapping) else batch.__getattribute__
    flux, flux_err, mask, features = (np.asarray(get(name)) for name in names)
    grid = (plasticc.N_PASSBANDS, n_times)
    for name, values in (("flux", flux), ("flux_err", flux_err), ("mask", mask)):
        if values.ndim != 3 or values.shape[1:] != grid:
            raise UserError(
                f"encoder input {name} has shape {values.shape}; this run expects "
                f"(n, {grid[0]}, {grid[1]})"
            )
    for name, values in (("flux_err", flux_err), ("mask", mask)):
        if len(values) != len(flux):
            raise UserError(
                f"encoder input {name} holds {len(values)} objects and flux {len(flux)}: give "
                "the arrays of the same objects"
            )
    given_shape = features.shape
    features = gridding.model_features(features, stats.names)
    if features.ndim != 2 or features.shape != (len(flux), len(stats.names)):
        raise UserError(
            f"encoder input features has shape {given_shape}; this run expects ({len(flux)}, "
            f"{len(stats.names)}) in the order of the run's `stats.names`, or ({len(flux)}, "
            f"{len(gridding.FEATURE_NAMES)}), every feature of a prepared dataset"
        )
    for name, values in (("flux", flux), ("flux_err", flux_err), ("features", features)):
        if not (
            np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
        ):
            raise UserError(f"encoder input {name} is of type {values.dtype}: give real numbers")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
            raise UserError(
                f"encoder input mask holds {mask.dtype} values other than 0 and 1: give "
                "True/False (or 1/0) per cell, True where the cell is observed"
            )
        mask = mask.astype(bool)
    flux, flux_err = np.asarray(flux, np.float32), np.asarray(flux_err, np.float32)
    ids = _object_ids(batch)

    def row(index: int) -> str:
        named = ids is not None and len(ids) == len(flux)
        return f"encoder input row {index}" + (f" (object_id {ids[index]})" if named else "")

    # Observed cells must be usable (unobserved ones may hold anything, NaN included).
    bad = mask & ~(np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=(1, 2)))
        raise UserError(
            f"{row(rows[0])}: an observed cell (mask True) has a flux that is not finite or a "
            f"flux_err that is not a positive finite number ({rows.size} such objects): fix them "
            "or mark them unobserved"
        )
    # NaN: a feature undefined for the object. Infinite is refused, as prepare refuses such an
    # object (an audit: it was clipped to the normalisation's edge without a word).
    infinite = np.isinf(features)  # in place: no copy of every batch's features
    if infinite.any():
        rows = np.flatnonzero(infinite.any(axis=1))
        name = stats.names[int(np.flatnonzero(infinite[rows[0]])[0])]
        raise UserError(
            f"{row(rows[0])}: its feature {name} is infinite ({rows.size} such objects): give "
            "NaN for a feature that is undefined"
        )
    return {
        "flux": np.ascontiguousarray(flux),
        "flux_err": np.ascontiguousarray(flux_err),
        "mask": np.ascontiguousarray(mask),
        "features": stats.normalise(features),
    }


def _object_ids(batch: ArraysLike) -> np.ndarray | None:
    """The inputs' object ids, where they carry them (`LightCurveArrays`, a dict with them)."""
    ids = (
        batch.get("object_id") if isinstance(batch, Mapping) else getattr(batch, "object_id", None)
    )
    return None if ids is None else np.asarray(ids)


def padded_size(n: int, batch_size: int, min_size: int = MIN_PADDED_BATCH) -> int:
    """Rows of the compiled batch that holds `n <= batch_size` rows: the next power of two from
    `min_size` up, at most `batch_size`."""
    size = min_size
    while size < n:
        size *= 2
    return min(size, batch_size)


def batch_sizes(
    n: int, batch_size: int, min_size: int = MIN_PADDED_BATCH, tight: bool = False
) -> list[tuple[int, int]]:
    """(real rows, compiled rows) of the batches that hold `n` rows: full batches, then the rest
    padded to `padded_size`. With `tight`, a rest that would be padded by more than an eighth is
    first cut into halves of its padded size (1,394 rows: 1,024 + 256 + 114 in 128, not 1,394 in
    2,048): the same compiled shapes, a third of the work less for a replay night's objects."""
    sizes = []
    while n > 0:
        padded = padded_size(n, batch_size, min_size)
        if tight and padded - n > padded // 8 and padded > min_size:
            sizes.append((padded // 2, padded // 2))
        else:
            sizes.append((min(n, padded), padded))
        n -= sizes[-1][0]
    return sizes


def padded_batches(
    data: Mapping[str, np.ndarray],
    batch_size: int,
    order: np.ndarray | None = None,
    *,
    min_size: int = MIN_PADDED_BATCH,
    tight: bool = False,
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Cut rows into fixed-shape batches; the last is padded with zero rows.

    Every batch holds `batch_size` rows but the last, which is padded to `padded_size` rows: with
    `min_size=batch_size` every batch has the one shape (training compiles once), otherwise a
    session compiles a handful of shapes (powers of two), not one per input size.

    Args:
        data: name -> (n, ...) arrays, e.g. `model_inputs`.
        batch_size: rows per batch.
        order: row order (a permutation); None for the stored order.
        min_size: smallest padded batch.
        tight: cut the rest into smaller batches rather than pad it much (`batch_sizes`).

    Yields:
        (batch, n_real): every array of `data` cut to the batch's rows, plus `weight` (rows,)
        float32, 1 for the `n_real` real rows (first) and 0 for padding.
    """
    # An order may take some of the rows (training on partial light curves: one row an object).
    n = len(next(iter(data.values()))) if order is None else len(order)
    if tight and order is None:
        start = 0
        for n_real, size in batch_sizes(n, batch_size, min_size, tight=True):
            yield _padded(data, slice(start, start + n_real), n_real, size), n_real
            start += n_real
        return
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        rows = slice(start, stop) if order is None else order[start:stop]
        n_real = stop - start if order is None else len(rows)
        yield _padded(data, rows, n_real, padded_size(n_real, batch_size, min_size)), n_real


def _padded(
    data: Mapping[str, np.ndarray], rows: slice | np.ndarray, n_real: int, size: int
) -> dict[str, np.ndarray]:
    batch = {name: _pad(values[rows], size) for name, values in data.items()}
    batch["weight"] = (np.arange(size) < n_real).astype(np.float32)
    return batch


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    if len(values) == size:
        return values
    pad = np.zeros((size - len(values), *values.shape[1:]), values.dtype)
    return np.concatenate([values, pad])
