"""The gridding kernel: light-curve rows of whole objects to fixed-shape tensors and features.

Pure NumPy, no I/O: `grid_chunk` grids every object of a chunk at once (no per-object Python
loop), and the result does not depend on how objects are grouped into chunks (every reduction is
per object). `GridSpec` is the one place for the time grid and its bin width.

The grid, and why:

- **Reference time.** Each object is centred on t0, the MJD of its highest flux/flux_err among
  detected points (all points if none is detected). PLAsTiCC light curves span three years with
  seasonal gaps of about six months, and transients occupy weeks of them; aligning on the most
  significant point puts every transient's peak at the same place in the tensor, which an MLP needs
  (it has no translation invariance). Signal-to-noise rather than raw flux, so that one noisy point
  of a faint object does not win. `data.time_anchor` ("peak" by default) can put t0 at the first
  detection instead (`anchor_rows`), for complete and partial light curves alike; the physics
  features stay anchored on the peak whatever the grid's anchor (docs/early.md).
- **Window.** `data.window_before` days before t0 and `data.window_after` after (64 and 192 by
  default): supernova rises last 10-30 days and declines (with the slow SN II plateaus, TDEs and
  SLSNe) last months, so the window is asymmetric. It is shorter than a season, so the grid rarely
  straddles a seasonal gap; periodic and stochastic variables (EB, RR Lyrae, Mira, AGN) are
  stationary, so a window anywhere shows their character, and what the window misses is summarised
  by whole-light-curve features (below).
- **Bins.** `data.n_time_bins` bins (64: 4 days each by default) x 6 passbands. Sampling is
  irregular, with each band visited every few days in the wide (WFD) survey and nightly in the deep
  drilling fields (DDF), so a bin of a few days holds zero to a few WFD points or several DDF
  points. Points in one cell are combined by their inverse-variance weighted mean (error
  1/sqrt(sum w)), the optimal estimate for Gaussian errors, so dense DDF sampling gives a smaller
  error rather than a different shape. Empty cells are masked, not interpolated: the model's
  likelihood simply skips them.
- **Scaling.** Flux and error are divided by the object's amplitude, max |flux| over all its
  observations (floor 1 FLUXCAL). Fluxes span four orders of magnitude between objects, and
  difference-imaging fluxes are negative when the source is fainter than in the template, so
  log-scaling is impossible and min-max scaling would shift zero; dividing by max |flux| keeps
  zero at zero, the sign, and the shape in [-1, 1]. `log10_amplitude` is kept as a feature, so the
  scaling loses nothing.

Per-object features (`FEATURE_NAMES`, raw and un-normalised; `FeatureStats` normalises them;
NaN where undefined). First the grid's own summaries (`GRID_FEATURE_NAMES`): the log amplitude;
what the window misses (per band: the weighted mean flux and the standard deviation of flux, both
over amplitude, and the fraction of detected points; overall: log10 of the number of
observations, log10(1 + days between the first and last detection) (0 with fewer than two
detections), and the fraction of points inside the window); and the metadata a model may use:
`ddf`, `hostgal_photoz`, `hostgal_photoz_err` (0 for galactic objects, whatever the input gives),
`distmod` (NaN for galactic objects, also where the input gives one, with the indicator
`is_galactic` = hostgal_photoz == 0), `mwebv`. Then the
physics and variability features of `plasticc_jax.features` (luminosity, timescales, colours,
decline, variability): with the first, `MODEL_FEATURE_NAMES`, which the network and the feature
components read. Last the Gaussian-process features of `plasticc_jax.gp_features`, which only the
`gp_classifier` component reads. Not `ra`/`decl`: sky position is the survey footprint, not
physics. Not `hostgal_specz`: it exists for few test objects (a train/test shift a model would
learn). Never the truth columns.

Objects that cannot be gridded get a rejection code (`REASONS`, first reason wins). Labels stay
outside the kernel: `is_anomaly` comes out False and is set where splits are made (prepare, score).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from plasticc_jax import features, gp_features, plasticc
from plasticc_jax.config import TIME_ANCHORS, DataConfig
from plasticc_jax.dataset import LightCurveArrays

if TYPE_CHECKING:
    from plasticc_jax.lightcurve_rows import Rows

NB = plasticc.N_PASSBANDS
# Flux over error at which an object without PLAsTiCC `detected` flags counts as detected (the
# survey's own detection limit): the first detection's rule (`first_detection_rows`,
# `early.first_detection`).
DETECTION_SNR = 5.0
_BANDS = plasticc.PASSBANDS
GRID_FEATURE_NAMES: tuple[str, ...] = (
    "log10_amplitude",
    "log10_n_obs",
    "log10_duration",
    "frac_in_window",
    *(f"mean_flux_{b}" for b in _BANDS),
    *(f"std_flux_{b}" for b in _BANDS),
    *(f"frac_detected_{b}" for b in _BANDS),
    "ddf",
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "is_galactic",
    "mwebv",
)
# The features the network and the feature components read (normalised by `FeatureStats`): the
# grid's summaries and the metadata, then the light-curve features of `plasticc_jax.features`.
MODEL_FEATURE_NAMES: tuple[str, ...] = (*GRID_FEATURE_NAMES, *features.FEATURE_NAMES)
# Every per-object feature, in the order of `LightCurveArrays.features`: the model's, then the
# Gaussian-process features (`plasticc_jax.gp_features`), which only the `gp_classifier` reads (the
# configuration the validation chose; docs/evaluation.md).
FEATURE_NAMES: tuple[str, ...] = (*MODEL_FEATURE_NAMES, *gp_features.GP_NAMES)


def model_features(values: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The columns of raw features `values` (n, F) that a model fitted on the features `names`
    reads: the first len(names) when `values` holds every feature of `FEATURE_NAMES` and `names`
    begin them (a run trained before the GP features were added reads the same columns), else
    `values` as given (the caller checks its shape)."""
    if values.shape[-1] == len(FEATURE_NAMES) and FEATURE_NAMES[: len(names)] == tuple(names):
        return values[..., : len(names)]
    return values


def never_detected(values: np.ndarray) -> np.ndarray:
    """(m,) bool: the objects of raw features `values` (m, len(FEATURE_NAMES)) without a point
    flagged `detected` or at S/N >= DETECTION_SNR (the first detection's rule)."""
    n_detected = values[:, FEATURE_NAMES.index("log10_n_detected")]
    peak_snr = values[:, FEATURE_NAMES.index("log10_peak_snr")]
    return (n_detected == 0) & (peak_snr < np.log10(DETECTION_SNR))


# Metadata values given with each chunk, in this order (the last columns of FEATURE_NAMES).
META_VALUES: tuple[str, ...] = ("ddf", "hostgal_photoz", "hostgal_photoz_err", "distmod", "mwebv")

# Rejection reasons (per object), in order of precedence; code 0 means accepted. The first ones
# are per row (a bad row rejects its object); the bounds are in `plasticc`.
_MJD_LOW = plasticc.MJD_MIN - plasticc.MJD_MARGIN_DAYS
_MJD_HIGH = plasticc.MJD_MAX + plasticc.MJD_MARGIN_DAYS
DUPLICATED = "duplicated observation (same object, mjd and passband)"
TOO_FEW = "fewer than {min_obs} observations"
# A safety net after gridding: a grid or feature value that is +-inf (NaN in a feature means
# "undefined" and is allowed).
NON_FINITE_OUTPUT = "non-finite gridded value or feature (extreme input values)"
# The largest error of an observed grid cell (in its scaled units): its square, the VAE's
# variance, stays within float32 with room for the model's own.
MAX_CELL_ERROR = 1e18
NON_FINITE_MJD = "mjd missing or not finite"
# Partial light curves (`score --as-of`, `replay`): no detection yet, so not scored yet.
NOT_DETECTED = "not detected yet"
OUTSIDE_SPAN = (
    f"mjd outside the survey span by more than {plasticc.MJD_MARGIN_DAYS:g} days "
    f"({_MJD_LOW:g}-{_MJD_HIGH:g}; a Julian date is MJD + 2400000.5)"
)
REASONS: tuple[str, ...] = (
    "",
    NON_FINITE_MJD,
    "flux missing or not finite (NaN or inf)",
    "flux_err missing or not a positive finite number",
    "passband missing or outside 0-5",
    OUTSIDE_SPAN,
    f"|flux| beyond the float32 range ({plasticc.FLOAT32_MAX:.3g})",
    f"flux_err below {plasticc.FLUX_ERR_FLOOR:g} or beyond the float32 range",
    DUPLICATED,
    TOO_FEW,
    NON_FINITE_OUTPUT,
    NOT_DETECTED,
)
_DUPLICATED, _TOO_FEW, _NON_FINITE_OUTPUT = (
    REASONS.index(r) for r in (DUPLICATED, TOO_FEW, NON_FINITE_OUTPUT)
)


@dataclass(frozen=True)
class GridSpec:
    """The time grid and the acceptance rule: everything the kernel needs from the config.

    Attributes:
        n_time_bins: bins per passband.
        window_before, window_after: days before and after each object's reference time t0.
        min_observations: objects with fewer observations are rejected.
        time_anchor: the reference time t0 (`config.TIME_ANCHORS`, `anchor_rows`).
        gp_features: fit the Gaussian-process features (else NaN).
        gp_fit: how (`gp_features.FITS`).
    """

    n_time_bins: int
    window_before: float
    window_after: float
    min_observations: int
    time_anchor: str = "peak"
    gp_features: bool = True
    gp_fit: str = "full"

    def __post_init__(self) -> None:
        if self.time_anchor not in TIME_ANCHORS:
            raise ValueError(f"time_anchor {self.time_anchor!r} not one of {TIME_ANCHORS}")
        if self.gp_fit not in gp_features.FITS:
            raise ValueError(f"gp_fit {self.gp_fit!r} not one of {tuple(gp_features.FITS)}")

    @staticmethod
    def from_config(data: DataConfig) -> GridSpec:
        return GridSpec(
            data.n_time_bins,
            data.window_before,
            data.window_after,
            data.min_observations,
            data.time_anchor,
            data.gp_features,
            data.gp_fit,
        )

    @property
    def bin_width(self) -> float:
        """Days per time bin."""
        return (self.window_before + self.window_after) / self.n_time_bins

    def bin_centres(self) -> np.ndarray:
        """Centres of the time bins, (n_time_bins,) days relative to each object's t0."""
        return -self.window_before + (np.arange(self.n_time_bins) + 0.5) * self.bin_width

    def describe(self) -> dict[str, Any]:
        """How the tensors are made, for the prepared dataset's manifest."""
        return {
            "passbands": list(plasticc.PASSBANDS),
            "n_time_bins": self.n_time_bins,
            "window_before_days": self.window_before,
            "window_after_days": self.window_after,
            "bin_days": self.bin_width,
            "reference_time": _REFERENCE_TIME[self.time_anchor],
            "cell_value": "inverse-variance weighted mean; error 1/sqrt(sum of weights)",
            "scaling": "flux and flux_err divided by max |flux| over the object (floor 1)",
            "gp_features": self.gp_features,
            # The default fit is how every dataset was gridded before fits were a setting.
            **({} if self.gp_fit == "full" else {"gp_fit": self.gp_fit}),
        }


# How the manifest names each anchor (the default's text is the one from before anchors existed).
_REFERENCE_TIME = {
    "peak": "MJD of the highest flux/flux_err among detected points",
    "first_detection": (
        "MJD of the first detected point (else the first with flux/flux_err >= "
        f"{DETECTION_SNR:g}, else the first point)"
    ),
}


@dataclass
class Chunk:
    """Rows of whole objects (grouped) and, per object, its metadata values and label.

    Attributes:
        rows: the light-curve rows, grouped by object.
        starts: (m,) first row of each object.
        meta: (m, len(META_VALUES)) float32 metadata values (NaN where missing).
        target: (m,) class labels (-1 where unknown).
    """

    rows: Rows
    starts: np.ndarray
    meta: np.ndarray
    target: np.ndarray

    def take(self, keep: np.ndarray) -> Chunk:
        """The objects where `keep` ((m,) bool) is True."""
        rows, starts = take_objects(self.rows, self.starts, keep)
        return Chunk(rows, starts, self.meta[keep], self.target[keep])


def take_objects(rows: Rows, starts: np.ndarray, keep: np.ndarray) -> tuple[Rows, np.ndarray]:
    """The rows and the first row of each object where `keep` ((m,) bool) is True, of rows
    grouped by object (object i from `starts[i]`)."""
    counts = np.diff(np.r_[starts, len(rows)])
    kept = counts[keep]
    starts = np.r_[0, np.cumsum(kept)[:-1]].astype(np.int64)[: kept.size]
    return rows.take(np.repeat(keep, counts)), starts


@dataclass
class GridResult:
    """The gridded objects of a chunk, and the ids and codes (`REASONS`) of the rejected ones."""

    arrays: LightCurveArrays
    rejected_ids: np.ndarray
    rejected_codes: np.ndarray


def rejection_reason(code: int, min_observations: int) -> str:
    return REASONS[code].format(min_obs=min_observations)


def _duplicated_objects(o: np.ndarray, mjd: np.ndarray, pb: np.ndarray, m: int) -> np.ndarray:
    """(m,) bool: objects with two rows of equal mjd and passband."""
    same_object = o[1:] == o[:-1]
    if np.all(~same_object | (mjd[1:] >= mjd[:-1])):
        # Sorted by time within each object (the usual case): duplicates sit among runs of equal
        # mjd, so only those rows need sorting.
        tie = same_object & (mjd[1:] == mjd[:-1])
        rows = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])
    else:
        rows = np.arange(o.size)
    dup = np.zeros(m, bool)
    if rows.size:
        order = rows[np.lexsort((pb[rows], mjd[rows], o[rows]))]
        so, sm, sp = o[order], mjd[order], pb[order]
        same = (so[1:] == so[:-1]) & (sm[1:] == sm[:-1]) & (sp[1:] == sp[:-1])
        dup[so[1:][same]] = True
    return dup


def outside_span(mjd: np.ndarray) -> np.ndarray:
    """(n,) bool: a finite MJD too far outside the survey to be PLAsTiCC's (a JD, a typo)."""
    with np.errstate(invalid="ignore"):
        return (mjd < _MJD_LOW) | (mjd > _MJD_HIGH)


def row_problems(rows: Rows) -> np.ndarray:
    """(n,) int8 per row: the code in `REASONS` of its first problem (1-7: a bad value, a time
    outside the survey), 0 if none. An object's reason is the smallest code among its rows."""
    err, mjd = rows.flux_err, rows.mjd
    with np.errstate(invalid="ignore"):  # NaN compares False; those rows are caught first
        bad_rows = [
            ~np.isfinite(mjd),
            ~np.isfinite(rows.flux),
            ~(np.isfinite(err) & (err > 0)),
            (rows.passband < 0) | (rows.passband >= NB),
            outside_span(mjd),
            np.abs(rows.flux) > plasticc.FLOAT32_MAX,
            (err < plasticc.FLUX_ERR_FLOOR) | (err > plasticc.FLOAT32_MAX),
        ]
    codes = np.zeros(len(rows), np.int8)
    for code, bad in enumerate(bad_rows, start=1):
        if bad.any():
            codes[(codes == 0) & bad] = code
    return codes


def object_problems(rows: Rows, o: np.ndarray, m: int) -> np.ndarray:
    """(m,) int8: each object's smallest `row_problems` code (0: none); `o` (n,) the object
    index of each row."""
    row = row_problems(rows)
    bad = row > 0
    codes = np.full(m, np.iinfo(np.int8).max, np.int8)
    np.minimum.at(codes, o[bad], row[bad])
    codes[codes == np.iinfo(np.int8).max] = 0
    return codes


def invalid_objects(rows: Rows, o: np.ndarray, m: int) -> np.ndarray:
    """(m,) int8: each object's first problem in `REASONS` order that more observations cannot
    mend, a bad value (`object_problems`) or a duplicated observation; 0: none."""
    codes = object_problems(rows, o, m)
    codes[(codes == 0) & _duplicated_objects(o, rows.mjd, rows.passband, m)] = _DUPLICATED
    return codes


def _reject_codes(rows: Rows, o: np.ndarray, counts: np.ndarray, min_obs: int) -> np.ndarray:
    """(m,) int8 rejection code per object (0: accepted), first reason in `REASONS` order."""
    codes = invalid_objects(rows, o, counts.size)
    codes[(codes == 0) & (counts < min_obs)] = _TOO_FEW
    return codes


def grid_chunk(
    chunk: Chunk,
    spec: GridSpec,
    gp_cache: gp_features.FitCache | None = None,
    stop: threading.Event | None = None,
) -> GridResult:
    """Grid every valid object of a chunk at once; reject the others with a code. `gp_cache`:
    the Gaussian-process features of these objects fitted before with this spec, reused where
    fitted on the same points, kept for the next time (`gp_features.FitCache`: a replay's).
    `stop`, set from another thread, stops the Gaussian-process fit at its next call
    (`gp_features.FitStopped`)."""
    rows, starts = chunk.rows, chunk.starts
    n, m = len(rows), starts.size
    counts = np.diff(np.r_[starts, n])
    o = np.repeat(np.arange(m), counts)
    codes = _reject_codes(rows, o, counts, spec.min_observations) if m else np.zeros(0, np.int8)
    keep = codes == 0
    if not keep.all():
        valid = chunk.take(keep)
        rows, starts, meta, target = valid.rows, valid.starts, valid.meta, valid.target
        counts = counts[keep]
        m = counts.size
        o = np.repeat(np.arange(m), counts)
    else:
        meta, target = chunk.meta, chunk.target
    arrays = _grid_valid(rows, o, starts, counts, meta, target, spec, gp_cache, stop)
    overflow = _non_finite_output(arrays)
    if overflow.any():
        codes[np.flatnonzero(keep)[overflow]] = _NON_FINITE_OUTPUT
        arrays = arrays.take(np.flatnonzero(~overflow))
    bad = codes != 0
    return GridResult(arrays, chunk.rows.object_id[chunk.starts[bad]], codes[bad])


def _non_finite_output(arrays: LightCurveArrays) -> np.ndarray:
    """(m,) bool: objects with a non-finite observed grid cell (or an error whose square, the
    VAE's variance, would not be: a review's objects passed prepare and made training diverge)
    or a +-inf feature."""
    grid = np.isfinite(arrays.flux) & (np.abs(arrays.flux_err) <= MAX_CELL_ERROR)
    bad_grid = (arrays.mask & ~grid).any(axis=(1, 2))
    return bad_grid | np.isinf(arrays.features).any(axis=1)


def reference_rows(
    o: np.ndarray, starts: np.ndarray, snr: np.ndarray, detected: np.ndarray
) -> np.ndarray:
    """(m,) each object's peak row: its highest signal-to-noise detection (its highest
    signal-to-noise point if none is detected; the first of ties). The grid's reference time t0
    with the default `time_anchor` ("peak"; `anchor_rows`), and the physics and Gaussian-process
    features' t0 with any anchor.

    Args:
        o: (n,) each row's object (0..m-1, rows grouped by object); starts: (m,) first rows.
        snr, detected: (n,) flux / flux_err and the detection flag of each row.
    """
    has_detection = np.logical_or.reduceat(detected, starts)
    score = np.where(detected | ~has_detection[o], snr, -np.inf)
    best = np.maximum.reduceat(score, starts)
    return np.minimum.reduceat(np.where(score == best[o], np.arange(o.size), o.size), starts)


def first_detection_rows(
    o: np.ndarray, starts: np.ndarray, snr: np.ndarray, detected: np.ndarray
) -> np.ndarray:
    """(m,) the row of each object's first detection: its first row with the `detected` flag;
    for an object never flagged, its first row with snr >= `DETECTION_SNR`; for one without
    either, its first row. Rows are grouped by object and sorted by time within it, so "first"
    is the lowest row index (the rule of `early.first_detection`, on sorted, finite rows).

    Args:
        o: (n,) each row's object (0..m-1, rows grouped by object); starts: (m,) first rows.
        snr, detected: (n,) flux / flux_err and the detection flag of each row.
    """
    n = o.size
    index = np.arange(n)
    out = np.full(starts.size, n)
    for flags in (np.asarray(detected, bool), snr >= DETECTION_SNR):
        first = np.minimum.reduceat(np.where(flags, index, n), starts)
        out = np.where(out == n, first, out)
    return np.where(out == n, starts, out)


def anchor_rows(
    o: np.ndarray, starts: np.ndarray, snr: np.ndarray, detected: np.ndarray, anchor: str
) -> np.ndarray:
    """(m,) the row of each object's grid reference time t0 for a `data.time_anchor`: "peak"
    (`reference_rows`) or "first_detection" (`first_detection_rows`). Same arguments as those,
    rows sorted by time within each object."""
    if anchor == "peak":
        return reference_rows(o, starts, snr, detected)
    if anchor == "first_detection":
        return first_detection_rows(o, starts, snr, detected)
    raise ValueError(f"time_anchor {anchor!r} not one of {TIME_ANCHORS}")


def _grid_valid(
    rows: Rows,
    o: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    meta: np.ndarray,
    target: np.ndarray,
    spec: GridSpec,
    gp_cache: gp_features.FitCache | None = None,
    stop: threading.Event | None = None,
) -> LightCurveArrays:
    m, n_t = counts.size, spec.n_time_bins
    if m == 0:
        return empty_arrays(n_t)
    if not np.all((o[1:] != o[:-1]) | (rows.mjd[1:] >= rows.mjd[:-1])):
        # Time order within each object (PLAsTiCC files have it; the features need it).
        rows = rows.take(np.lexsort((rows.mjd, o)))
    mjd, pb, flux, err, det = rows.mjd, rows.passband, rows.flux, rows.flux_err, rows.detected
    snr = flux / err
    # The physics features' t0 is the peak, whatever the grid's anchor (docs/early.md).
    peak_rows = reference_rows(o, starts, snr, det)
    anchor = (
        peak_rows
        if spec.time_anchor == "peak"
        else anchor_rows(o, starts, snr, det, spec.time_anchor)
    )
    amplitude = np.maximum(np.maximum.reduceat(np.abs(flux), starts), 1.0)
    ddf, photoz, photoz_err, distmod, mwebv, galactic = _context(meta)
    window = (spec.window_before, spec.window_after)
    lengths, step = gp_features.FITS[spec.gp_fit]
    if stop is None:
        stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        # The Gaussian-process fit (JAX, which releases the GIL) beside the rest of the gridding.
        fitting = (
            pool.submit(
                gp_features.gp_features,
                mjd,
                pb,
                flux,
                err,
                starts,
                peak_rows,
                photoz,
                window,
                lengths=lengths,
                step=step,
                cache=gp_cache,
                object_ids=rows.object_id[starts].astype(np.int64),
                stop=stop,
            )
            if spec.gp_features
            else None
        )
        try:
            grid_flux, grid_err, mask, inside = _cells(rows, o, mjd[anchor], amplitude, m, spec)
            summaries = _summaries(rows, o, starts, counts, amplitude, inside)
            physics = features.physics_features(
                o, mjd, pb, flux, err, det, starts, peak_rows, distmod
            )
            variability = features.lc_package_features(starts, mjd, pb, flux, err, amplitude)
            process = (
                fitting.result()
                if fitting is not None
                else np.full((starts.size, len(gp_features.GP_NAMES)), np.nan)
            )
        except BaseException:
            stop.set()  # a Ctrl-C or an error here: the fit stops at its next call, not its end
            raise
    features_64 = np.column_stack(
        [
            *summaries,
            np.nan_to_num(ddf),
            photoz,
            photoz_err,
            distmod,
            galactic.astype(np.float64),
            mwebv,
            physics,
            variability,
            process,
        ]
    )
    # A feature beyond float32 (a reduced chi-square of an impossible S/N, above 1e19) becomes inf
    # and rejects its object (`_non_finite_output`), with the reason instead of NumPy's warning.
    with np.errstate(over="ignore"):
        values = features_64.astype(np.float32)
    shape = (m, NB, n_t)
    return LightCurveArrays(
        object_id=rows.object_id[starts].astype(np.int64),
        target=target.astype(np.int32),
        is_anomaly=np.zeros(m, bool),
        flux=grid_flux.reshape(shape).astype(np.float32),
        flux_err=grid_err.reshape(shape).astype(np.float32),
        mask=mask.reshape(shape),
        features=values,
    )


def _cells(
    rows: Rows, o: np.ndarray, t0: np.ndarray, amplitude: np.ndarray, m: int, spec: GridSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The grid: each (object, band, time bin) cell's inverse-variance mean flux and its error,
    in units of the object's largest |flux| (`amplitude`), 0 where unobserved; the mask of
    observed cells; and which rows fall inside the window around `t0` (per object)."""
    n_t = spec.n_time_bins
    weight = 1.0 / rows.flux_err**2
    bins = np.floor((rows.mjd - t0[o] + spec.window_before) / spec.bin_width)
    inside = (bins >= 0) & (bins < n_t)
    cell = ((o * NB + rows.passband) * n_t + bins.astype(np.int64))[inside]
    size = m * NB * n_t
    sum_w = np.bincount(cell, weight[inside], minlength=size)
    sum_wf = np.bincount(cell, (weight * rows.flux)[inside], minlength=size)
    mask = sum_w > 0
    safe_w = np.where(mask, sum_w, 1.0)
    scale = np.repeat(amplitude, NB * n_t)
    grid_flux = np.where(mask, sum_wf / safe_w / scale, 0.0)
    grid_err = np.where(mask, 1.0 / np.sqrt(safe_w) / scale, 0.0)
    return grid_flux, grid_err, mask, inside


def _summaries(
    rows: Rows,
    o: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    amplitude: np.ndarray,
    inside: np.ndarray,
) -> list[np.ndarray]:
    """The whole light curve's summaries, in `FEATURE_NAMES`' order: amplitude, observations,
    detected duration, the share inside the window; per band the weighted mean flux and the
    spread over the amplitude, and the detected fraction."""
    m = counts.size
    mjd, flux, det = rows.mjd, rows.flux, rows.detected
    weight = 1.0 / rows.flux_err**2
    band = o * NB + rows.passband
    n_band = np.bincount(band, minlength=m * NB)
    safe_n = np.maximum(n_band, 1)
    w_band = np.bincount(band, weight, minlength=m * NB)
    mean_w = np.bincount(band, weight * flux, minlength=m * NB) / np.where(n_band, w_band, 1.0)
    mean_u = np.bincount(band, flux, minlength=m * NB) / safe_n
    var = np.bincount(band, (flux - mean_u[band]) ** 2, minlength=m * NB) / safe_n
    frac_det = np.bincount(band, det, minlength=m * NB) / safe_n
    # A band without observations: mean, spread and detected fraction 0 ("nothing seen yet"),
    # not NaN; validated on partial light curves, where a quarter of the rows lack a band
    # (`scripts/unobserved_band_probe.py`, docs/early.md).
    amp_band = np.repeat(amplitude, NB)
    n_det = np.add.reduceat(det.astype(np.int64), starts)
    first_det = np.minimum.reduceat(np.where(det, mjd, np.inf), starts)
    last_det = np.maximum.reduceat(np.where(det, mjd, -np.inf), starts)
    duration = np.where(n_det >= 2, last_det - first_det, 0.0)
    in_window = np.bincount(o, inside, minlength=m) / counts
    return [
        np.log10(amplitude),
        np.log10(counts),
        np.log10(1.0 + duration),
        in_window,
        (mean_w / amp_band).reshape(m, NB),
        (np.sqrt(var) / amp_band).reshape(m, NB),
        frac_det.reshape(m, NB),
    ]


def _context(meta: np.ndarray) -> tuple[np.ndarray, ...]:
    """The metadata columns (`META_VALUES`) as the features read them: ddf, photoz, photoz_err,
    distmod, mwebv and whether the object is galactic."""
    ddf, photoz, photoz_err, distmod, mwebv = meta.astype(np.float64).T
    # A galactic object (photoz 0) has no distance and no host here, whatever the input gives (a
    # star's parallax distance, a photo-z error): the model knew neither for them (PLAsTiCC's
    # distmod are missing, their errors 0), and a distmod given made an ordinary eclipsing binary
    # a flagged anomaly through distmod and peak_abs_mag; an error of 0.05 raised the median
    # anomaly score of galactic objects 3-5 times.
    galactic = photoz == 0
    distmod = np.where(galactic, np.nan, distmod)
    photoz_err = np.where(galactic, 0.0, photoz_err)
    return ddf, photoz, photoz_err, distmod, mwebv, galactic


def empty_arrays(n_time_bins: int) -> LightCurveArrays:
    """A batch of zero objects with the right shapes and dtypes."""
    grid = (0, NB, n_time_bins)
    return LightCurveArrays(
        object_id=np.zeros(0, np.int64),
        target=np.zeros(0, np.int32),
        is_anomaly=np.zeros(0, bool),
        flux=np.zeros(grid, np.float32),
        flux_err=np.zeros(grid, np.float32),
        mask=np.zeros(grid, bool),
        features=np.zeros((0, len(FEATURE_NAMES)), np.float32),
    )
