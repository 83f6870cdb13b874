"""Active anomaly detection: the expert's answers re-rank the candidates.

The model is coniferest's `AADForest` (Das et al. 2017, arXiv:1708.09441, as reimplemented by the
SNAD team; Ishida et al. 2021 used it on PLAsTiCC): an isolation forest whose leaf weights are
refitted, after each answer, so that objects answered "anomaly" score above a margin and objects
answered "not interesting" below it. It is refitted from scratch on every answer with a fixed seed,
so the ranking is a pure function of the features and the answers: a restarted session ranks
exactly as the one before it.

Features (`feature_columns`), all taken from a score table so that any table of the run (evaluate's
or `score`'s) can be ranked: the VAE latent means `mu_*`, the detector's score columns
(`score_columns`), and the per-object context features of `gridding.FEATURE_NAMES` where the table
carries them. An isolation forest's splits are invariant to affine rescaling of a feature, so the
features are used as they are.

`Policy` names the model, the feature groups and whether the model's score is blended with the
detector's static score; `POLICY` is the one a review, `score --review-labels` and the simulated
expert use. It was chosen on the leave-one-known-class-out validation (`review.validation`,
docs/review.md), never on the test split's anomalies.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from plasticc_jax import gridding
from plasticc_jax.review.labels import ANOMALY, NOT_INTERESTING, Answer

log = logging.getLogger(__name__)

# The detector's score columns, by name, for runs whose models/ metadata does not list them
# (higher = more anomalous in each).
KNOWN_SCORE_COLUMNS: tuple[str, ...] = (
    "anomaly_score",
    "fused_score",
    "forest_score",
    "recon_nll_per_cell",
    "chi2_per_cell",
    "kl",
    "latent_knn",
    "recon_chi2",
    "classifier",
)
# Scores of baselines that evaluate adds for comparison: not the detector's, not in `score`'s
# tables, so never a feature.
BASELINE_COLUMNS: tuple[str, ...] = ("lc_forest_score",)
# Columns this package adds to a table it re-ranks.
REVIEW_SCORE, REVIEW_RANK = "review_score", "review_rank"
_LATENT = re.compile(r"mu_(\d+)")
# The fit's settings: 100 trees of 256 objects each, as the isolation forest of Liu et al. and
# the coniferest default; the seed makes the ranking reproducible.
N_TREES, N_SUBSAMPLES, SEED = 100, 256, 0
MODELS: tuple[str, ...] = ("aadforest", "pineforest")


@dataclass(frozen=True)
class Policy:
    """How the active ranking is made from a table's features and the expert's answers.

    Attributes:
        model: coniferest's "aadforest" (leaf weights refitted on the answers) or "pineforest"
            (the trees that best rank the answers kept out of a larger forest).
        latents, scores, context: the feature groups used (`feature_columns`): the VAE latent
            means, the detector's score columns, the per-object context features.
        blend: rank the candidates by the mean of two ranks, the model's score's and the
            detector's static `anomaly_score`'s, instead of the model's score alone.
        n_trees, n_subsamples, seed: the forest.
    """

    model: str = "aadforest"
    latents: bool = True
    scores: bool = True
    context: bool = True
    blend: bool = False
    n_trees: int = N_TREES
    n_subsamples: int = N_SUBSAMPLES
    seed: int = SEED

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r}: choose from {', '.join(MODELS)}")
        if not (self.latents or self.scores or self.context):
            raise ValueError("a policy needs at least one feature group")

    def describe(self) -> str:
        """A short name: the model, its feature groups, and the blend."""
        groups = [g for g in ("latents", "scores", "context") if getattr(self, g)]
        name = (
            f"{'AADForest' if self.model == 'aadforest' else 'PineForest'} ({' + '.join(groups)})"
        )
        return f"{name}, rank-blended with the static score" if self.blend else name


# The policy of reviews, `score --review-labels` and the simulated expert (see the module): the
# best of the candidates on the validation (`review.validation.CANDIDATES`, docs/review.md),
# AADForest with the library's defaults on the latents, the detector's scores and the context.
POLICY = Policy()


def latent_columns(columns: Sequence[str]) -> list[str]:
    """`mu_0 ... mu_{L-1}` in index order."""
    found = [(int(m.group(1)), c) for c in columns if (m := _LATENT.fullmatch(c))]
    return [c for _, c in sorted(found)]


def score_columns(columns: Sequence[str], models_dir: Path | None = None) -> list[str]:
    """The detector's score columns in a table: `anomaly_score` first, then its components.

    The components are those the run's detector metadata (`models/*.json`, a `score_columns` or
    `components` list) names, then the known names (`KNOWN_SCORE_COLUMNS`) and any other column
    ending in `_score`; baselines' and this package's own scores are left out.
    """
    named: list[str] = []
    for path in sorted(Path(models_dir).glob("*.json")) if models_dir else []:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in ("score_columns", "components"):
            value = meta.get(key) if isinstance(meta, dict) else None
            if isinstance(value, list):
                named += [v for v in value if isinstance(v, str)]
    suffixed = [c for c in columns if c.endswith("_score")]
    excluded = {*BASELINE_COLUMNS, REVIEW_SCORE}
    present = set(columns)
    chosen = ["anomaly_score", *named, *KNOWN_SCORE_COLUMNS, *suffixed]
    return [c for c in dict.fromkeys(chosen) if c in present and c not in excluded]


def candidate_columns(
    columns: Sequence[str], models_dir: Path | None = None, policy: Policy = POLICY
) -> list[str]:
    """The policy's latent, score and context columns among `columns`, in that order (before
    the checks of `feature_columns`)."""
    names = [
        *(latent_columns(columns) if policy.latents else []),
        *(score_columns(columns, models_dir) if policy.scores else []),
        *([c for c in gridding.FEATURE_NAMES if c in columns] if policy.context else []),
    ]
    return list(dict.fromkeys(names))


def feature_columns(
    table: pd.DataFrame, models_dir: Path | None = None, policy: Policy = POLICY
) -> list[str]:
    """The active model's features in a score table: latents, scores, context (see module), the
    groups `policy` uses.

    Columns that repeat another one exactly (`anomaly_score` is the detector's final score
    column under a second name) are kept once.
    """
    kept: list[str] = []
    for name in candidate_columns(list(table.columns), models_dir, policy):
        if pd.api.types.is_numeric_dtype(table[name]) and not any(
            _same(table[name], table[k]) for k in kept
        ):
            kept.append(name)
    return kept


def _same(a: pd.Series, b: pd.Series) -> bool:
    """Equal columns (the first values compared first: most pairs differ there)."""
    return bool(np.array_equal(a.to_numpy()[:64], b.to_numpy()[:64])) and bool(
        np.array_equal(a.to_numpy(), b.to_numpy())
    )


def feature_matrix(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(n, d) float64 of the columns; NaN becomes the column's median, +-inf its finite extremes
    (the forest needs finite values; ordering is what it uses)."""
    x = table[list(columns)].to_numpy(np.float64, copy=True)
    for j in range(x.shape[1]):
        column = x[:, j]
        finite = np.isfinite(column)
        if finite.all():
            continue
        good = column[finite]
        low, high, mid = (good.min(), good.max(), np.median(good)) if good.size else (0, 0, 0)
        column[np.isnan(column)] = mid
        column[column == np.inf] = high
        column[column == -np.inf] = low
    return x


class ActiveRanker:
    """The active scores of a pool of objects, given the expert's labels (see `Policy`).

    Args:
        features: (n, d) the pool's features; the forest's trees are grown on them.
        static: (n,) the detector's `anomaly_score` of the pool (needed by a blending policy).
        policy: the model and its settings (`POLICY`).
    """

    def __init__(
        self, features: np.ndarray, static: np.ndarray | None = None, policy: Policy = POLICY
    ) -> None:
        self.features = np.ascontiguousarray(features, np.float64)
        self.policy = policy
        self.n_subsamples = max(2, min(policy.n_subsamples, len(self.features)))
        if policy.blend and (static is None or len(static) != len(self.features)):
            raise ValueError("a blending policy needs the static score of every object")
        self.static = None if static is None else np.asarray(static, np.float64)

    def scores(
        self,
        known_features: np.ndarray | None = None,
        known_anomaly: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of the pool, higher = to be shown first, float64.

        Args:
            known_features: (m, d) features of the labelled objects (none: the plain forest).
            known_anomaly: (m,) bool, True for "anomaly", False for "not interesting".
        """
        if len(self.features) < 2:  # no forest on one object (coniferest gives inf, then NaN)
            return np.zeros(len(self.features))
        from coniferest.aadforest import AADForest
        from coniferest.label import Label
        from coniferest.pineforest import PineForest

        p = self.policy
        forest = AADForest if p.model == "aadforest" else PineForest
        model = forest(n_trees=p.n_trees, n_subsamples=self.n_subsamples, random_seed=p.seed)
        if known_features is None or len(known_features) == 0:
            model.fit(self.features)
        else:
            labels = np.where(np.asarray(known_anomaly, bool), Label.ANOMALY, Label.REGULAR)
            known = np.ascontiguousarray(known_features, np.float64)
            model.fit_known(self.features, known, labels.astype(np.int64))
        # coniferest follows scikit-learn: lower score_samples = more anomalous.
        score = -np.asarray(model.score_samples(self.features), np.float64)
        if not p.blend:
            return score
        assert self.static is not None
        return 0.5 * (rank_fraction(score) + rank_fraction(self.static))

    def order(self, scores: np.ndarray, answered: np.ndarray | None = None) -> np.ndarray:
        """(n,) the pool's rows in the order to show them: unanswered first, by active score,
        equal scores by the static score (the forest gives most of a pool one score after a
        single "not interesting" answer), then by row.

        Args:
            scores: (n,) `scores`'s output; answered: (n,) bool, the rows already answered.
        """
        static = np.zeros(len(scores)) if self.static is None else self.static
        done = np.zeros(len(scores), bool) if answered is None else np.asarray(answered, bool)
        if not len(scores) == len(static) == len(done):
            raise ValueError("scores, the static score and `answered` need one value a row")
        return np.lexsort((-static, -np.asarray(scores, np.float64), done))


def rank_fraction(values: np.ndarray) -> np.ndarray:
    """(n,) each value's rank among `values` scaled to [0, 1] (ties: their mean rank; NaN
    lowest)."""
    from scipy.stats import rankdata

    values = np.where(np.isnan(values), -np.inf, values)
    return (rankdata(values) - 1.0) / max(len(values) - 1, 1)


def informative(answers: Mapping[int, Answer]) -> tuple[np.ndarray, np.ndarray]:
    """(object ids, is anomaly) of the answers that teach the model (skips do not)."""
    kept = [a for a in answers.values() if a.label in (ANOMALY, NOT_INTERESTING)]
    ids = np.array([a.object_id for a in kept], np.int64)
    return ids, np.array([a.label == ANOMALY for a in kept], bool)
