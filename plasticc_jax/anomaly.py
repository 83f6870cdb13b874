"""The anomaly detector: an Isolation Forest on latent means, fused with the VAE's own evidence.

Components, each oriented so that higher = more anomalous:

- `forest`: `-IsolationForest.score_samples(mu)`, the forest fitted on the latent means of the
  train split's known classes only;
- `recon`: reconstruction negative log-likelihood per observed grid cell
  (`recon_nll / n_observed`), so long and short light curves are comparable;
- `kl`: KL divergence of the encoder's posterior from the prior (nats), the latent evidence;
- `chi2`: reduced chi-square of the reconstruction, the mean over observed cells of
  `(flux - mean)**2 / (flux_err**2 + sigma**2)` (about 1 for a light curve the VAE explains).
  Unlike `recon`, it does not grow with the noise level: the NLL per cell adds
  `0.5 * log(2 pi variance)`, so faint objects score high whatever the fit (on the default run's
  val known objects, Spearman 0.81 between `recon` and the mean log variance of the observed
  cells, 0.16 for `chi2`; saved per run as `val_spearman_noise` in anomaly.json).

Fusion is a weighted mean of rank-normalised components. Each component is mapped through the
empirical CDF of that component on the **val split of known classes** (`Reference`), so an
object's fused score depends only on that object and the run, never on the objects scored with
it. The fused score is reported as `-log10(1 - sum_i w_i F_i(x_i))`, a strictly increasing
function of the weighted mean of the CDF values `F_i` (same ranking), computed in log space so
objects far beyond anything seen in val stay ordered instead of tying at 1. A fused score of 2
means the components' val tail probabilities average 1%. The flag threshold is the
`1 - target_fpr` quantile of the fused score on the same val known objects. No anomaly label
enters any fit or choice here.

Saved in `<run>/models/`: `forest.skops` (skops, loaded with an explicit list of trusted types)
and `anomaly.json` (weights, ECDF references, thresholds, forest settings).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp
from scipy.stats import spearmanr
from sklearn.ensemble import IsolationForest

from plasticc_jax.config import EvalConfig
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
COMPONENTS: tuple[str, ...] = ("forest", "recon", "kl", "chi2")
FOREST_FILE = "forest.skops"
PARAMS_FILE = "anomaly.json"
# The only non-default type an IsolationForest file needs; anything else is refused on load.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
# Extra false-positive rates whose val thresholds are saved for reference.
REFERENCE_FPRS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1)
MAX_REFERENCE_POINTS = 2001


@dataclass(frozen=True)
class Reference:
    """Empirical CDF of one component on the val known objects, with exponential tails.

    Inside the reference range the CDF is linear between the sorted values at plotting positions
    `(i + 1) / (n + 1)`; beyond it, exponential tails continue it (scale: the mean excess over the
    90th / under the 10th percentile), so the transform is continuous and strictly increasing and
    objects more extreme than anything in val keep their order instead of all tying at 1.

    Attributes:
        values: sorted distinct reference values, (m,).
        probabilities: CDF at `values`, increasing in (0, 1), (m,).
        scale_low: lower-tail scale, in the component's units.
        scale_high: upper-tail scale, in the component's units.
    """

    values: np.ndarray
    probabilities: np.ndarray
    scale_low: float
    scale_high: float

    @staticmethod
    def fit(sample: np.ndarray, max_points: int = MAX_REFERENCE_POINTS) -> Reference:
        """Build the reference from a 1-d sample (at least 2 finite values)."""
        x = np.sort(np.asarray(sample, dtype=np.float64))
        if x.size < 2 or not np.isfinite(x).all():
            raise ValueError("a reference needs at least 2 finite values")
        n = x.size
        probabilities = np.arange(1, n + 1) / (n + 1)
        if n > max_points:  # keep memory and JSON small: quantiles at evenly spaced ranks
            keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
            x_kept, probabilities = x[keep], probabilities[keep]
        else:
            x_kept = x
        values, inverse, counts = np.unique(x_kept, return_inverse=True, return_counts=True)
        # For tied values take the mean plotting position of the tie (mid-rank).
        probs = np.bincount(inverse, weights=probabilities) / counts
        spread = max(float(x[-1] - x[0]), 1e-12)
        q10, q90 = np.quantile(x, [0.1, 0.9])
        scale_high = float(np.mean(x[x >= q90] - q90)) if (x > q90).any() else 0.0
        scale_low = float(np.mean(q10 - x[x <= q10])) if (x < q10).any() else 0.0
        floor = 1e-3 * spread
        return Reference(values, probs, max(scale_low, floor), max(scale_high, floor))

    def log_survival(self, x: np.ndarray) -> np.ndarray:
        """log(1 - CDF), float64, same shape as `x`: the log tail probability of a val known
        object scoring at least `x`. Kept in log space so extreme scores never round to a tie."""
        x = np.asarray(x, dtype=np.float64)
        v, p = self.values, self.probabilities
        out = np.array(np.log1p(-np.interp(x, v, p)), dtype=np.float64)
        high = x > v[-1]
        out[high] = np.log1p(-p[-1]) - (x[high] - v[-1]) / self.scale_high
        low = x < v[0]
        out[low] = np.log1p(-p[0] * np.exp((x[low] - v[0]) / self.scale_low))
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """CDF values in (0, 1] (1 only where float64 rounds), float64, same shape as `x`."""
        return -np.expm1(self.log_survival(x))

    def to_json(self) -> dict[str, Any]:
        return {
            "values": self.values.tolist(),
            "probabilities": self.probabilities.tolist(),
            "scale_low": self.scale_low,
            "scale_high": self.scale_high,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Reference:
        return Reference(
            np.asarray(raw["values"], np.float64),
            np.asarray(raw["probabilities"], np.float64),
            float(raw["scale_low"]),
            float(raw["scale_high"]),
        )


def recon_per_cell(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Reconstruction NLL per observed grid cell, (n,): comparable across light-curve lengths."""
    return outputs["recon_nll"] / np.maximum(outputs["n_observed"], 1)


def fit_forest(latents: np.ndarray, is_anomaly: np.ndarray, config: EvalConfig) -> IsolationForest:
    """Fit the Isolation Forest on latent means of known-class objects.

    Args:
        latents: (n, L) latent means of the fitting objects (train split, known classes).
        is_anomaly: (n,) bool; must be all False: an anomaly reaching the fit is a bug.
        config: forest size, subsample size and seed.
    """
    if np.asarray(is_anomaly).any():
        raise ValueError("anomaly objects must never reach the Isolation Forest fit")
    if len(latents) < 2:
        raise UserError(
            f"only {len(latents)} train objects of known classes: the Isolation Forest needs "
            "more; prepare more data or change data.anomaly_classes"
        )
    forest = IsolationForest(
        n_estimators=config.n_estimators,
        max_samples=min(config.max_samples, len(latents)),
        random_state=config.seed,
    )
    return forest.fit(np.asarray(latents, np.float32))


@dataclass
class AnomalyDetector:
    """Forest + ECDF references + weights + threshold: everything `score` needs.

    Attributes:
        forest: fitted on train-split latent means of known classes.
        references: one `Reference` per component (val split, known classes).
        weights: fusion weight per component (sum 1; zero weights are computed but not fused).
        threshold: fused score above which an object is flagged.
        target_fpr: the false-positive rate on val known objects that `threshold` was set for.
        info: bookkeeping saved in anomaly.json (counts, val thresholds, correlations).
    """

    forest: IsolationForest
    references: dict[str, Reference]
    weights: dict[str, float]
    threshold: float
    target_fpr: float
    info: dict[str, Any] = field(default_factory=dict)
    # The score column that ranks and flags objects.
    score_column: ClassVar[str] = "fused_score"

    def components(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw component scores (higher = more anomalous), each (n,) float64.

        Args:
            outputs: `scoring.vae_outputs` (`TrainedVae.evaluate` plus `chi2`): `mu` (n, L),
                `recon_nll`, `n_observed`, `kl`, `chi2` (n,).
        """
        mu = np.asarray(outputs["mu"], np.float32)
        forest = -self.forest.score_samples(mu) if len(mu) else np.empty(0)
        return {
            "forest": np.asarray(forest, np.float64),
            "recon": np.asarray(recon_per_cell(outputs), np.float64),
            "kl": np.asarray(outputs["kl"], np.float64),
            "chi2": np.asarray(outputs["chi2"], np.float64),
        }

    def fuse(self, components: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused score, (n,) float64 >= 0: -log10 of the weighted mean of the components' val
        tail probabilities (= -log10(1 - weighted mean of their ECDF values))."""
        names = [k for k, w in self.weights.items() if w > 0.0]
        assert names, "at least one fusion weight must be positive"
        log_terms = np.stack(
            [
                np.log(self.weights[k]) + self.references[k].log_survival(components[k])
                for k in names
            ]
        )
        return -logsumexp(log_terms, axis=0) / np.log(10.0)

    def score(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named score columns for the score table, each (n,), higher = more anomalous: one per
        component (`recon_nll_per_cell`, `chi2_per_cell`, `kl`, `forest_score`) and their fusion
        (`fused_score`, the `score_column`).

        Args:
            outputs: see `components`.
        """
        parts = self.components(outputs)
        return {
            "recon_nll_per_cell": parts["recon"],
            "chi2_per_cell": parts["chi2"],
            "kl": np.asarray(outputs["kl"]),  # as the VAE gives it (float32)
            "forest_score": parts["forest"],
            "fused_score": self.fuse(parts),
        }

    def flag(self, anomaly_score: np.ndarray) -> np.ndarray:
        """(n,) bool: scores above the threshold (calibrated for `target_fpr` on val known)."""
        return np.asarray(anomaly_score) > self.threshold

    def save(self, models_dir: Path) -> None:
        """Write `forest.skops` and `anomaly.json` into `models_dir` (atomically)."""
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        import skops.io as sio  # imported when needed: it imports every scikit-learn estimator

        with atomic_path(models_dir / FOREST_FILE) as tmp:
            sio.dump(self.forest, tmp)
        params = {
            "format_version": FORMAT_VERSION,
            "components": list(COMPONENTS),
            "weights": self.weights,
            "threshold": self.threshold,
            "target_fpr": self.target_fpr,
            "references": {k: r.to_json() for k, r in self.references.items()},
            "forest": {"file": FOREST_FILE, **self.forest.get_params()},
            "info": self.info,
        }
        atomic_write_text(models_dir / PARAMS_FILE, json.dumps(params, indent=1) + "\n")

    @staticmethod
    def load(models_dir: Path) -> AnomalyDetector:
        """Read a detector written by `save`; refuses forest files needing unexpected types."""
        models_dir = Path(models_dir)
        params_path, forest_path = models_dir / PARAMS_FILE, models_dir / FOREST_FILE
        if not params_path.is_file() or not forest_path.is_file():
            raise UserError(
                f"no anomaly detector in {models_dir} (need {PARAMS_FILE} and {FOREST_FILE}): "
                "run `plasticc-jax evaluate` for this run first"
            )
        params = json.loads(params_path.read_text())
        if params.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{params_path}: unsupported format_version, re-run evaluate")
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=forest_path)
        unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unexpected:
            raise UserError(f"{forest_path} asks to load unexpected types {unexpected}; refusing")
        forest = sio.load(forest_path, trusted=list(untrusted))
        return AnomalyDetector(
            forest=forest,
            references={k: Reference.from_json(v) for k, v in params["references"].items()},
            weights={k: float(v) for k, v in params["weights"].items()},
            threshold=float(params["threshold"]),
            target_fpr=float(params["target_fpr"]),
            info=params.get("info", {}),
        )


def normalise_weights(weights: tuple[float, ...]) -> dict[str, float]:
    """Map (forest, recon, kl, chi2) weights to a dict summing to 1."""
    if len(weights) != len(COMPONENTS) or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(
            f"eval.fusion_weights={weights}: need {len(COMPONENTS)} non-negative weights "
            f"for {', '.join(COMPONENTS)}, not all zero"
        )
    total = float(sum(weights))
    return {name: float(w) / total for name, w in zip(COMPONENTS, weights, strict=True)}


def fit_detector(
    train: dict[str, np.ndarray],
    train_is_anomaly: np.ndarray,
    val: dict[str, np.ndarray],
    val_is_anomaly: np.ndarray,
    config: EvalConfig,
) -> AnomalyDetector:
    """Fit the forest (train known), the ECDF references and the threshold (val known).

    Args:
        train: `scoring.vae_outputs` of the train split (any classes: flagged objects are
            dropped here before anything is fitted).
        train_is_anomaly: (n_train,) bool, True for every object that is not of a known class.
        val: the same for the val split.
        val_is_anomaly: (n_val,) bool, likewise.
        config: forest settings, `target_fpr` and `fusion_weights` for (forest, recon, kl,
            chi2).
    """
    keep = ~np.asarray(train_is_anomaly, bool)
    forest = fit_forest(train["mu"][keep], train_is_anomaly[keep], config)
    val_known = {k: v[~np.asarray(val_is_anomaly, bool)] for k, v in val.items()}
    if len(val_known["mu"]) < 2:
        raise UserError("the val split holds fewer than 2 known objects: cannot calibrate")
    detector = AnomalyDetector(
        forest=forest,
        references={},
        weights=normalise_weights(config.fusion_weights),
        threshold=np.inf,
        target_fpr=config.target_fpr,
    )
    parts = detector.components(val_known)
    detector.references = {k: Reference.fit(v) for k, v in parts.items()}
    fused = detector.fuse(parts)
    detector.threshold = calibrate_threshold(fused, config.target_fpr)
    rho = spearmanr(np.stack([parts[k] for k in COMPONENTS], axis=1)).statistic
    # Noise level of each object: the mean log variance of its observed cells, recovered from
    # NLL per cell = 0.5 * (log 2 pi + mean log variance + chi2).
    noise = 2.0 * parts["recon"] - np.log(2.0 * np.pi) - parts["chi2"]
    detector.info = {
        "n_fit": int(keep.sum()),
        "n_val_known": len(fused),
        "latent_dim": int(train["mu"].shape[1]),
        "val_thresholds": {str(f): calibrate_threshold(fused, f) for f in REFERENCE_FPRS},
        "val_flag_rate": float(np.mean(fused > detector.threshold)),
        # Redundancy check of the components on val known objects (no anomaly labels).
        "val_spearman": {
            f"{a}|{b}": float(np.atleast_2d(rho)[i, j])
            for i, a in enumerate(COMPONENTS)
            for j, b in enumerate(COMPONENTS)
            if i < j
        },
        # Does a component measure the fit or merely the noise level? (val known objects)
        "val_spearman_noise": {
            k: float(spearmanr(parts[k], noise).statistic) for k in ("recon", "chi2")
        },
    }
    log.info(
        "forest fitted on %d train known objects; threshold %.4f for FPR %.3g on %d val known",
        keep.sum(),
        detector.threshold,
        config.target_fpr,
        len(fused),
    )
    return detector


def calibrate_threshold(scores: np.ndarray, target_fpr: float) -> float:
    """Score above which `target_fpr` of the given (known-class) scores lie: their
    `1 - target_fpr` quantile (the 'higher' order statistic, so at most target_fpr is above)."""
    if not 0.0 < target_fpr < 1.0:
        raise UserError(f"eval.target_fpr={target_fpr}: must be in (0, 1)")
    return float(np.quantile(np.asarray(scores, np.float64), 1.0 - target_fpr, method="higher"))
