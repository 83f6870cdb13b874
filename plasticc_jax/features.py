"""Per-object light-curve features for anomaly detection, from the raw observations of a chunk.

Two sets, both computed from each object's raw observations (rows grouped by object and sorted by
time within it), never from the grid:

- `PHYSICS_NAMES` (`physics_features`): this project's own, pure NumPy and vectorised over the
  chunk (no per-object Python loop), anchored on the highest-S/N detection (the grid's reference
  time t0 by default; with `data.time_anchor = "first_detection"` the grid moves and these stay
  on t0: peak luminosity, colours at the peak and rise and decline times are defined relative
  to it, the stand-in for the maximum, and the anchor comparison of docs/early.md changes the
  grid alone);
- `LC_NAMES` (`lc_package_features`): the per-passband variability statistics of the
  `light-curve` package (Malanchev et al. 2021; the extractor of the SNAD anomaly-detection team),
  which separate periodic and stochastic variables (eclipsing binaries, RR Lyrae, AGN).

A feature that is undefined for an object (no distance for a galactic object, no observation in an
epoch, too few points in a band) is NaN: the feature normalisation and the detectors treat NaN as
"missing", never as a value. Which features earn their place was decided by the leave-one-class-out
validation (docs/evaluation.md).

Why the physics features (the failure modes of a detector that knows only the grid's shape):

- **Luminosity.** `peak_abs_mag` = -2.5 log10(peak flux) + 27.5 - distmod: superluminous
  supernovae and tidal disruptions are 2-3 magnitudes brighter than normal supernovae at the same
  apparent brightness. Undefined for galactic objects (no distance modulus). A peak flux at or
  below 1 FLUXCAL counts as 1 (`log10_peak_flux` 0): the magnitude is then a faint limit, "no
  brighter than this", which is what such a light curve tells (in the PLAsTiCC training set 87
  of the 5,523 extragalactic objects, all AGN, whose difference flux near the peak is that small).
- **Timescales.** Days from the first detection to t0 and from t0 to the last detection, and
  from t0 to the earliest and latest sampled point of t0's band above half its maximum:
  kilonovae fade in days, supernovae in weeks, superluminous supernovae in months; variables are
  detected in every season.
- **Colour** near the peak and 15-40 days later, as normalised flux differences of adjacent bands
  ((f_a - f_b) / (|f_a| + |f_b|), bounded in [-1, 1] and defined for negative fluxes; positive for
  the bluer object, the opposite sign of a colour in magnitudes). Observer-frame, as every
  feature here: no K-correction, no Milky Way extinction removed (docs/data.md).
- **Decline**: flux in epochs before and after t0 relative to each band's flux at the peak.
- **Variability**: chi-square of a constant, the fractions of points above +3 sigma and below
  -3 sigma (eclipses and fading variables go negative in difference imaging), seasons with a
  detection.
"""

from __future__ import annotations

import itertools

import light_curve as lc
import numpy as np

from plasticc_jax import plasticc

NB = plasticc.N_PASSBANDS
# Days around t0 averaged for the "peak" flux of each band, and the colour epoch after it.
PEAK_HALF_WIDTH_DAYS = 10.0
LATE_EPOCH_DAYS = (15.0, 40.0)
# Epochs (days relative to t0) whose flux, relative to the band's peak flux, is a feature.
EPOCHS: tuple[tuple[float, float, str], ...] = (
    (-40.0, -15.0, "m40_m15"),
    (-15.0, -5.0, "m15_m5"),
    (5.0, 15.0, "p5_p15"),
    (15.0, 40.0, "p15_p40"),
    (40.0, 100.0, "p40_p100"),
    (100.0, 300.0, "p100_p300"),
)
# Observations further apart than this (days) belong to different observing seasons.
SEASON_GAP_DAYS = 100.0
RATIO_CLIP = 5.0
_ADJACENT = ("ug", "gr", "ri", "iz", "zy")

PHYSICS_NAMES: tuple[str, ...] = (
    "log10_peak_snr",
    "log10_peak_flux",
    "peak_abs_mag",
    *(f"colour_peak_{c}" for c in _ADJACENT),
    *(f"colour_late_{c}" for c in _ADJACENT[1:]),
    *(f"flux_ratio_{name}" for *_, name in EPOCHS),
    "rise_days",
    "fall_days",
    "detected_days",
    "half_max_rise_days",
    "half_max_fall_days",
    "log10_n_detected",
    "frac_seasons_detected",
    "log10_chi2_constant",
    "frac_above_3sigma",
    "frac_below_3sigma",
    "min_over_max_flux",
)


def _extreme(starts: np.ndarray, values: np.ndarray, take: np.ufunc) -> np.ndarray:
    """Per-object max (take=np.maximum) or min of the non-NaN values; NaN where none."""
    fill = -np.inf if take is np.maximum else np.inf
    out = take.reduceat(np.where(np.isnan(values), fill, values), starts)
    return np.where(np.isfinite(out), out, np.nan)


def _weighted_mean(
    group: np.ndarray, n_groups: int, weight: np.ndarray, values: np.ndarray, select: np.ndarray
) -> np.ndarray:
    """Inverse-variance weighted mean per group over the selected rows; NaN for empty groups."""
    weight = np.where(select, weight, 0.0)
    sum_w = np.bincount(group, weight, minlength=n_groups)
    sum_wx = np.bincount(group, weight * np.where(select, values, 0.0), minlength=n_groups)
    return np.where(sum_w > 0, sum_wx / np.where(sum_w > 0, sum_w, 1.0), np.nan)


def _colour(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (np.abs(a) + np.abs(b) + 1e-9)


def physics_features(
    o: np.ndarray,
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    detected: np.ndarray,
    starts: np.ndarray,
    peak_row: np.ndarray,
    distmod: np.ndarray,
) -> np.ndarray:
    """The features of `PHYSICS_NAMES` for m objects.

    Args:
        o: (n,) object index 0..m-1 of each row; rows grouped by object, sorted by mjd within it.
        mjd (days), passband (0-5), flux, flux_err (FLUXCAL), detected (bool): (n,) each.
        starts: (m,) first row of each object.
        peak_row: (m,) row of each object's highest-S/N detection (`gridding.reference_rows`),
            whatever the grid's anchor.
        distmod: (m,) distance modulus (NaN for galactic objects or where unknown).

    Returns:
        (m, len(PHYSICS_NAMES)) float64; NaN where a feature is undefined.
    """
    m = starts.size
    t0 = mjd[peak_row]
    weight = 1.0 / flux_err**2
    snr = flux / flux_err
    dt = mjd - t0[o]
    band = o * NB + passband
    columns: list[np.ndarray] = [np.log10(np.maximum(_extreme(starts, snr, np.maximum), 1e-3))]

    def band_flux(select: np.ndarray) -> np.ndarray:
        return _weighted_mean(band, m * NB, weight, flux, select).reshape(m, NB)

    peak = band_flux(np.abs(dt) <= PEAK_HALF_WIDTH_DAYS)
    peak_flux = np.nanmax(np.where(np.isnan(peak), -np.inf, peak), axis=1)
    peak_flux = np.where(np.isfinite(peak_flux), peak_flux, np.nan)
    bright = np.log10(np.maximum(peak_flux, 1.0))
    columns += [bright, plasticc.FLUX_ZEROPOINT - 2.5 * bright - distmod]
    columns += [_colour(peak[:, b], peak[:, b + 1]) for b in range(NB - 1)]
    late = band_flux((dt > LATE_EPOCH_DAYS[0]) & (dt <= LATE_EPOCH_DAYS[1]))
    columns += [_colour(late[:, b], late[:, b + 1]) for b in range(1, NB - 1)]

    # Flux relative to the band's peak flux, averaged with weights (peak/err)^2 (the ratio's own
    # inverse variance), in each epoch.
    reference = peak.reshape(-1)[band]
    usable = np.isfinite(reference) & (reference > 0)
    safe_reference = np.where(usable, reference, 1.0)
    ratio = np.clip(flux / safe_reference, -RATIO_CLIP, RATIO_CLIP)
    ratio_weight = np.where(usable, weight * safe_reference**2, 0.0)
    for low, high, _ in EPOCHS:
        select = usable & (dt > low) & (dt <= high)
        columns.append(_weighted_mean(o, m, ratio_weight, ratio, select))

    detected_mjd = np.where(detected, mjd, np.nan)
    first = _extreme(starts, detected_mjd, np.minimum)
    last = _extreme(starts, detected_mjd, np.maximum)
    columns += [t0 - first, last - t0, last - first]

    # Span of the points above half the band maximum, in the passband of t0 (sampled; docs/data.md).
    in_band = passband == passband[peak_row][o]
    band_max = _extreme(starts, np.where(in_band, flux, np.nan), np.maximum)
    above = in_band & (flux >= 0.5 * band_max[o]) & (np.abs(dt) < 300.0)
    above_mjd = np.where(above, mjd, np.nan)
    columns += [t0 - _extreme(starts, above_mjd, np.minimum)]
    columns += [_extreme(starts, above_mjd, np.maximum) - t0]

    counts = np.bincount(o, minlength=m)
    n_detected = np.bincount(o, detected, minlength=m)
    new_season = np.r_[True, (np.diff(mjd) > SEASON_GAP_DAYS) | (o[1:] != o[:-1])]
    season = np.cumsum(new_season) - 1
    season_detected = np.bincount(season, detected) > 0
    season_owner = o[new_season]
    n_seasons = np.bincount(season_owner, minlength=m)
    n_seasons_detected = np.bincount(season_owner, season_detected, minlength=m)
    columns += [np.log10(1.0 + n_detected), n_seasons_detected / np.maximum(n_seasons, 1)]

    mean = np.bincount(o, weight * flux, minlength=m) / np.bincount(o, weight, minlength=m)
    chi2 = np.bincount(o, weight * (flux - mean[o]) ** 2, minlength=m)
    columns.append(np.log10(chi2 / np.maximum(counts - 1, 1) + 1e-3))
    columns.append(np.bincount(o, snr > 3.0, minlength=m) / counts)
    columns.append(np.bincount(o, snr < -3.0, minlength=m) / counts)
    max_abs = _extreme(starts, np.abs(flux), np.maximum)
    columns.append(_extreme(starts, flux, np.minimum) / np.maximum(max_abs, 1.0))
    return np.column_stack(columns)


def _lc_extractor() -> lc.Extractor:
    bands = list(range(NB))
    return lc.Extractor(
        lc.Amplitude(bands=bands),
        lc.BeyondNStd(1.0, bands=bands),
        lc.Cusum(bands=bands),
        lc.Eta(bands=bands),
        lc.InterPercentileRange(0.1, bands=bands),
        lc.Kurtosis(bands=bands),
        lc.LinearFit(bands=bands),
        lc.MaximumSlope(bands=bands),
        lc.Skew(bands=bands),
        lc.StetsonK(bands=bands),
        lc.StandardDeviation(bands=bands),
        lc.ReducedChi2(bands=bands),
    )


_EXTRACTOR = _lc_extractor()
LC_NAMES: tuple[str, ...] = tuple(f"lc_{name}" for name in _EXTRACTOR.names)
FEATURE_NAMES: tuple[str, ...] = (*PHYSICS_NAMES, *LC_NAMES)


def lc_package_features(
    starts: np.ndarray,
    mjd: np.ndarray,
    passband: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    amplitude: np.ndarray,
) -> np.ndarray:
    """The `light-curve` package's features of `LC_NAMES` for m objects.

    Flux and error are divided by each object's amplitude first, so that the shape statistics
    (amplitude, slopes, spreads) do not merely repeat the object's brightness.

    Args:
        starts: (m,) first row of each object; rows grouped by object, sorted by mjd within it.
        mjd (days), passband (0-5), flux, flux_err (FLUXCAL): (n,) each.
        amplitude: (m,) the object's amplitude (max |flux|, floor 1).

    Returns:
        (m, len(LC_NAMES)) float64; NaN where a feature is undefined (too few points in a band).
    """
    if not starts.size:
        return np.zeros((0, len(LC_NAMES)))
    counts = np.diff(np.r_[starts, mjd.size])
    scale = np.repeat(amplitude, counts)
    flux, flux_err = flux / scale, flux_err / scale
    bounds = np.r_[starts, mjd.size]
    curves = [
        (mjd[a:b], flux[a:b], flux_err[a:b], passband[a:b]) for a, b in itertools.pairwise(bounds)
    ]
    # One thread: chunks are already featurised in parallel by the streaming thread pool.
    return _EXTRACTOR.many(curves, fill_value=np.nan, sorted=True, check=False, n_jobs=1)
