"""The objects under review and everything the page shows about them.

A pool is the candidate rows of a score table (`pool_rows`: the objects the detector was not
fitted on), with

- the active model's features (`active.feature_columns`) and the static score (`anomaly_score`);
- a guess of the nearest known class: the table's `nearest_class` / `nearest_class_prob` when the
  detector wrote them, else a vote of the `K_VOTE` nearest known objects in the latent space (the
  run's train split, known classes; Euclidean distance between latent means);
- galactic or not: the table's `is_galactic` or `hostgal_photoz` (0 for galactic objects), else
  the prepared dataset's `is_galactic` feature;
- the gridded light curves (`Curves`) with the VAE's reconstruction: the known objects' and the
  run's own candidates' from its prepared dataset (when on disk), new objects' from the files
  they were scored from (`CurveFiles`); each shown only if it is the curve scored
  (`same_objects`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from plasticc_jax import gridding, plasticc, provenance, readers, runs, streaming
from plasticc_jax.config import Config
from plasticc_jax.dataset import SPLITS, LightCurveArrays, iter_split, read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.gridding import GridSpec
from plasticc_jax.io_utils import folder_lock
from plasticc_jax.replay_input import night_end
from plasticc_jax.review import active

log = logging.getLogger(__name__)

K_VOTE = 10  # known neighbours whose classes vote for the class guess
N_NEIGHBOURS = 5  # known neighbours whose light curves the page shows
FIT_SPLITS = ("train", "val")  # the detector was fitted on these: never candidates
# Per-object context the page shows (from the table if it has them, else the prepared dataset).
CONTEXT_SHOWN: tuple[str, ...] = (
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "mwebv",
    "ddf",
    "is_galactic",
    "log10_amplitude",
    "log10_n_obs",
    "log10_duration",
)


@dataclass
class Curves:
    """Gridded light curves with their reconstruction, looked up by object id.

    Attributes:
        arrays: the objects' grids (scaled flux, `dataset.LightCurveArrays`).
        mu: their latent means, (n, latent_dim).
        mean, sigma: the VAE's reconstruction at z = mu, (n, n_bands, n_times).
        times: (n_times,) bin centres in days from each object's reference time.
        feature_names: names of `arrays.features` (the dataset manifest's).
    """

    arrays: LightCurveArrays
    mu: np.ndarray
    mean: np.ndarray
    sigma: np.ndarray
    times: np.ndarray
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self._rows = {int(o): i for i, o in enumerate(self.arrays.object_id.astype(np.int64))}

    def row(self, object_id: int) -> int | None:
        return self._rows.get(int(object_id))

    def curve(self, object_id: int) -> dict[str, Any] | None:
        """The page's view of one light curve (JSON-ready), or None if not in the dataset."""
        i = self.row(object_id)
        if i is None:
            return None
        a = self.arrays
        return {
            "times": _round(self.times),
            "bands": [
                {
                    "name": name,
                    "flux": _round(a.flux[i, b]),
                    "flux_err": _round(a.flux_err[i, b]),
                    "observed": a.mask[i, b].astype(bool).tolist(),
                    "mean": _round(self.mean[i, b]),
                    "sigma": _round(self.sigma[i, b]),
                }
                for b, name in enumerate(plasticc.PASSBANDS[: a.flux.shape[1]])
            ],
        }

    def features(self, object_id: int) -> dict[str, float]:
        i = self.row(object_id)
        if i is None:
            return {}
        return dict(zip(self.feature_names, self.arrays.features[i].tolist(), strict=True))


def _round(values: np.ndarray) -> list[float | None]:
    """JSON-ready values, 4 decimals; non-finite ones as None."""
    rounded = np.round(np.asarray(values, np.float64), 4)
    return [v if math.isfinite(v) else None for v in rounded.tolist()]


def infer_workdir(run_dir: Path) -> Path:
    """The project folder of a run: where its config's `run_dir` resolves to `run_dir`, else the
    current folder."""
    relative = runs.read_config(run_dir).run_path
    run = Path(run_dir).resolve()
    n = len(relative.parts)
    if not relative.is_absolute() and run.parts[-n:] == relative.parts:
        return Path(*run.parts[:-n])
    return Path.cwd()


def pool_rows(table: pd.DataFrame, source: Path) -> np.ndarray:
    """Rows of a score table that are candidates: not of the splits the detector was fitted on
    (all rows of a table without a `split` column).

    Raises:
        UserError: a table of those splits only (their scores are the detector's own fit).
    """
    if "split" not in table.columns:
        return np.arange(len(table))
    rows = np.flatnonzero(~table["split"].isin(FIT_SPLITS).to_numpy())
    if len(table) and not rows.size:
        raise UserError(
            f"the score table {source} holds only objects of the {' and '.join(FIT_SPLITS)} "
            "splits, which "
            "the detector was fitted and calibrated on: review the test split or new objects "
            "(`plasticc-jax score`)"
        )
    return rows


def _kinds(table: pd.DataFrame) -> np.ndarray | None:
    """Each row's kind (True: galactic) where the table says it, else None."""
    if "is_galactic" in table.columns:
        return table["is_galactic"].to_numpy(bool)
    if "hostgal_photoz" in table.columns:
        return table["hostgal_photoz"].to_numpy(np.float64) == 0
    return None


def known_reference(run_table: pd.DataFrame, known_classes: tuple[int, ...]) -> pd.DataFrame:
    """The run's train-split objects of known classes: the neighbours' reference set."""
    keep = (run_table["split"] == "train") & run_table["target"].isin(known_classes)
    if "is_anomaly" in run_table.columns:
        keep &= ~run_table["is_anomaly"].astype(bool)
    return run_table[keep].reset_index(drop=True)


@dataclass(frozen=True)
class CurveFiles:
    """The files a score table of new objects was scored from (`review --lightcurves
    --metadata [--as-of]`), to show the candidates' light curves."""

    lightcurves: tuple[Path, ...]
    metadata: tuple[Path, ...]
    as_of: float | None = None


def replay_night(scores: Path | None) -> int | None:
    """The night of a replay's candidates given as `candidates/night=N` (or its part file), whose
    curves hold the rows up to that night; None for any other table."""
    if scores is None:
        return None
    for name in (Path(scores).name, Path(scores).parent.name):
        if match := re.fullmatch(r"night=(-?\d+)", name):
            return int(match.group(1))
    return None


def same_objects(table: pd.DataFrame, curves: Curves) -> np.ndarray:
    """Which rows of a score table were scored from the light curve of their id in `curves`:
    the same count of observed cells (`n_observed`) and the same values of the dataset's
    features that the table repeats (`hostgal_photoz`, `peak_abs_mag`, ...), which `evaluate`
    and `score` copy from the very grid they score; a table without any of those, the same
    latent means (to 1e-3, as another device computes them). A table of new files whose ids
    are also the dataset's, or one scored as of a date, differs: its rows are not those curves."""
    lookup = [curves.row(object_id) for object_id in table["object_id"]]
    found = np.array([i is not None for i in lookup])
    rows = np.array([i for i in lookup if i is not None], np.int64)
    known = table[found]
    match = np.ones(rows.size, bool)
    if "n_observed" in known.columns:
        cells = curves.arrays.mask[rows].sum(axis=(1, 2))
        match &= known["n_observed"].to_numpy(np.float64) == cells
    repeated = [name for name in known.columns if name in curves.feature_names]
    for name in repeated:
        theirs = pd.to_numeric(known[name], errors="coerce").to_numpy(np.float64)
        mine = curves.arrays.features[rows, curves.feature_names.index(name)]
        match &= np.isclose(theirs, mine, rtol=1e-6, atol=0.0, equal_nan=True)
    latents = active.latent_columns(list(known.columns))
    if not repeated and "n_observed" not in known.columns and latents:
        theirs = known[latents].to_numpy(np.float64)
        match &= np.isclose(theirs, curves.mu[rows], rtol=1e-3, atol=1e-3).all(axis=1)
    same = np.zeros(len(table), bool)
    same[np.flatnonzero(found)] = match
    return same


def load_curves(
    run_dir: Path, config: Config, dataset_dir: Path, object_ids: np.ndarray
) -> Curves | None:
    """The light curves of `object_ids` found in a prepared dataset, reconstructed by the run's
    VAE; None (with a warning) if the dataset is not on disk or is not the one the run was
    trained on."""
    if not (dataset_dir / "manifest.json").is_file():
        log.warning("no prepared dataset at %s: the page shows no light curves", dataset_dir)
        return None
    try:  # another dataset's grids may not even fit the run's network
        provenance.check_run_dataset(run_dir, config, dataset_dir, read_manifest(dataset_dir))
    except UserError as error:
        log.warning("%s; the page shows no light curves", error)
        return None
    wanted = np.unique(np.asarray(object_ids, np.int64))
    parts = [
        shard.take(np.isin(shard.object_id, wanted))
        for split in SPLITS
        for shard in iter_split(dataset_dir, split)
    ]
    arrays = LightCurveArrays.concatenate(parts)
    log.info("%d of %d light curves found in %s", len(arrays), wanted.size, dataset_dir)
    return reconstructed(run_dir, arrays, tuple(read_manifest(dataset_dir)["feature_names"]))


def load_file_curves(
    run_dir: Path,
    config: Config,
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    object_ids: np.ndarray,
    as_of: float | None = None,
) -> Curves:
    """The light curves of `object_ids` gridded from light-curve files as `score` grids them
    (`as_of`: as `score --as-of`), reconstructed by the run's VAE: the curves of a table of new
    files, which the prepared dataset does not hold."""
    wanted = np.unique(np.asarray(object_ids, np.int64))
    # As `score` reads them: a label that is not a class number is no reason not to grid.
    metadata = readers.labels_optional(readers.read_metadata_files(metadata_paths), warn=False)
    given = metadata["object_id"].to_numpy(np.int64)
    grids = streaming.stream_grids(
        lightcurve_paths,
        metadata_paths,
        config.data,
        metadata=metadata,
        exclude=given[~np.isin(given, wanted)],  # read past, not gridded
        as_of=as_of,
    )
    parts = [arrays.take(np.isin(arrays.object_id, wanted)) for arrays, _ in grids]
    n_times = config.data.n_time_bins
    arrays = LightCurveArrays.concatenate(parts) if parts else gridding.empty_arrays(n_times)
    files = ", ".join(str(p) for p in lightcurve_paths)
    log.info("%d of %d light curves found in %s", len(arrays), wanted.size, files)
    return reconstructed(run_dir, arrays, gridding.FEATURE_NAMES)


def reconstructed(run_dir: Path, arrays: LightCurveArrays, names: tuple[str, ...]) -> Curves:
    """`arrays` with their latent means and the run's VAE's reconstruction."""
    from plasticc_jax.encoder import load_vae  # JAX: imported only when curves are shown

    vae = load_vae(run_dir)
    out = vae.evaluate(arrays, reconstruction=True)
    times = GridSpec.from_config(vae.config.data).bin_centres()
    return Curves(arrays, out["mu"], out["mean"], out["sigma"], times, names)


class Pool:
    """The candidates of a review, their features and their context.

    Args:
        run_dir: a trained and evaluated run.
        scores: the score table to review (None: the run's `scores.parquet`).
        workdir: the project folder (None: `infer_workdir`), for the prepared dataset.
        top: review only the `top` objects of the static ranking (None: every candidate).
        curves: load light curves and reconstructions (needs JAX; the simulation does not).
        files: the light-curve files the table was scored from, for the curves of new objects.

    Raises:
        UserError: not an evaluated run (or one an interrupted evaluate left incomplete), an
            unreadable table, or a table without the columns the review needs.
    """

    def __init__(
        self,
        run_dir: Path,
        scores: Path | None = None,
        workdir: Path | None = None,
        top: int | None = None,
        curves: bool = True,
        files: CurveFiles | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        if workdir is not None and not Path(workdir).is_dir():
            raise UserError(f"workdir {workdir}: no such folder (the project folder of the run)")
        config = runs.read_config(self.run_dir)
        models = self.run_dir / "models"
        run_path = self.run_dir / "scores.parquet"
        # Read while no evaluate or train rewrites the run (they hold its lock): one running now
        # is named, where its INCOMPLETE marker said "run evaluate again" (found by an audit).
        with folder_lock(self.run_dir, "review", shared=True):
            provenance.require_complete(self.run_dir)  # not a table half rewritten by evaluate
            run_table = checked_table(read_table(run_path, NOT_EVALUATED), run_path, models)
            run_checkpoint = provenance.table_checkpoint(run_path)
        table = (
            run_table
            if scores is None
            else checked_table(read_table(Path(scores)), Path(scores), models)
        )
        _check_latents(table, scores, run_table, self.run_dir)
        if scores is not None:
            check_checkpoint(Path(scores), run_checkpoint, self.run_dir)
        source = run_path if scores is None else Path(scores)
        table = table.iloc[pool_rows(table, source)]
        if top is not None:
            if top < 1:
                raise UserError(f"--top {top}: review at least one candidate")
            table = table.nlargest(top, "anomaly_score", keep="first")
        if table.empty:
            raise UserError(f"the score table {source} holds no candidate to review")
        self.table = table.reset_index(drop=True)
        twice = self.table["object_id"].duplicated()
        if twice.any():
            hint = " (a replay's candidates: one night's, candidates/night=N)"
            nightly = "night" in self.table.columns
            raise UserError(
                f"the score table {source} lists object {self.table['object_id'][twice].iloc[0]} "
                "twice: give a table with one row per object" + (hint if nightly else "")
            )
        self.ids = self.table["object_id"].to_numpy(np.int64)
        self.row = {int(o): i for i, o in enumerate(self.ids)}
        self.feature_names = active.feature_columns(self.table, models)
        self.features = active.feature_matrix(self.table, self.feature_names)
        self.score_names = active.score_columns(list(self.table.columns), models)
        self.static = self.table["anomaly_score"].to_numpy(np.float64)
        self.latents = active.latent_columns(list(self.table.columns))

        self.reference = known_reference(run_table, config.data.known_classes)

        workdir = infer_workdir(self.run_dir) if workdir is None else Path(workdir)
        wanted = np.concatenate([self.ids, self.reference["object_id"].to_numpy(np.int64)])
        self.curves = (
            load_curves(self.run_dir, config, workdir / config.data.dataset_dir, wanted)
            if curves
            else None
        )
        night = replay_night(scores)
        if files is not None and files.as_of is None and night is not None:
            files = dataclasses.replace(files, as_of=night_end(night))
            log.info("%s: a replay's night %d, gridded as of its end (MJD %.4f)", scores, night,
                     files.as_of)  # fmt: skip
        self.file_curves = (
            load_file_curves(
                self.run_dir, config, files.lightcurves, files.metadata, self.ids, files.as_of
            )
            if curves and files is not None
            else None
        )
        # The candidates whose very light curve the files or the dataset hold (not merely an
        # object of their id).
        self.in_files = self._scored_from(
            self.file_curves,
            np.ones(len(self.ids), bool),
            "the light-curve files given (scored from other files, or as of another date)",
        )
        self.in_dataset = self._scored_from(
            self.curves,
            ~self.in_files,
            "the run's prepared dataset (new files whose ids are also the dataset's, or scored "
            "as of a date or a replay's night, whose curve was shorter; give the files scored, "
            "--lightcurves and --metadata, to see their curves)",
        )
        self.galactic = self._galactic()
        self._indexes = self._neighbour_indexes()
        self.class_guess, self.class_prob = self._class_guess()

    def __len__(self) -> int:
        return len(self.ids)

    def _scored_from(self, curves: Curves | None, asked: np.ndarray, where: str) -> np.ndarray:
        """(n,) bool: the candidates (of those `asked`) scored from their curve in `curves`; a
        warning names those that `curves` holds another curve of."""
        if curves is None:
            return np.zeros(len(self.ids), bool)
        same = same_objects(self.table, curves) & asked
        other = asked & np.isin(self.ids, curves.arrays.object_id) & ~same
        if other.any():
            log.warning(
                "%d candidates (object %d first) differ from the light curve of their id in %s: "
                "the page shows them without a light curve",
                other.sum(),
                self.ids[other][0],
                where,
            )
        return same

    def _mu(self, table: pd.DataFrame) -> np.ndarray:
        return table[self.latents].to_numpy(np.float64)

    def _neighbour_indexes(self) -> dict[bool | None, tuple[Any, np.ndarray]]:
        """Nearest-neighbour indexes of the reference's latent means, as kind (True: galactic)
        -> (index, its rows of `reference`): one of each kind where the tables say the kind,
        and one of every known object (None) for objects of a kind without any."""
        from sklearn.neighbors import NearestNeighbors

        if not len(self.reference) or not self.latents:
            return {}
        groups: dict[bool | None, np.ndarray] = {None: np.arange(len(self.reference))}
        kinds = _kinds(self.reference)
        if kinds is not None:
            groups.update({kind: np.flatnonzero(kinds == kind) for kind in (True, False)})
        mu = self._mu(self.reference)
        return {
            # +1: an object may be its own neighbour
            kind: (NearestNeighbors(n_neighbors=min(K_VOTE + 1, rows.size)).fit(mu[rows]), rows)
            for kind, rows in groups.items()
            if rows.size
        }

    def neighbours(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `reference`, distances), each (len(rows), k): the nearest known objects
        in the latent space, of the object's own kind (galactic or not, as the detector compares
        it: a review found a galactic object shown supernovae) where there are any, the object
        itself left out."""
        rows = np.asarray(rows, np.int64)
        if not self._indexes:
            return np.zeros((len(rows), 0), np.int64), np.zeros((len(rows), 0))
        kinds = [self.galactic[r] if self.galactic[r] in self._indexes else None for r in rows]
        ref_ids = self.reference["object_id"].to_numpy(np.int64)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for kind in set(kinds):
            chosen = np.array([j for j, c in enumerate(kinds) if c == kind])
            index, members = self._indexes[kind]
            dist, idx = index.kneighbors(self._mu(self.table.iloc[rows[chosen]]))
            for j, i, d in zip(chosen, members[idx], dist, strict=True):
                keep = ref_ids[i] != self.ids[rows[j]]
                found[int(j)] = i[keep][:k], d[keep][:k]
        k = min((len(found[j][0]) for j in found), default=0)
        return (
            np.array([found[j][0][:k] for j in range(len(rows))], np.int64).reshape(len(rows), k),
            np.array([found[j][1][:k] for j in range(len(rows))]).reshape(len(rows), k),
        )

    def _class_guess(self) -> tuple[list[str], np.ndarray]:
        """(class name, its probability) per object: the detector's if in the table, else the
        majority class of the `K_VOTE` nearest known objects and its share of them."""
        t = self.table
        if "nearest_class" in t.columns:
            names = [_class_label(c) for c in t["nearest_class"]]
            prob = (
                t["nearest_class_prob"].to_numpy(np.float64)
                if "nearest_class_prob" in t.columns
                else np.full(len(t), np.nan)
            )
            return names, prob
        if not self._indexes or not len(t):
            return ["unknown"] * len(t), np.full(len(t), np.nan)
        idx, _ = self.neighbours(np.arange(len(t)), K_VOTE)
        targets = self.reference["target"].to_numpy(np.int64)[idx]
        names, prob = [], np.empty(len(t))
        for i, row in enumerate(targets):
            classes, counts = np.unique(row, return_counts=True)
            best = int(np.argmax(counts))
            names.append(plasticc.class_name(int(classes[best])))
            prob[i] = counts[best] / max(len(row), 1)
        return names, prob

    def _galactic(self) -> list[bool | None]:
        """Each candidate's kind (True: galactic; None: not known): the table's, else the
        dataset's feature."""
        t = self.table
        kinds = _kinds(t)
        if kinds is not None:
            return [bool(v) for v in kinds]
        out: list[bool | None] = []
        for row in range(len(t)):
            value = self.gridded_features(row).get("is_galactic")
            out.append(None if value is None else bool(value))
        return out

    def _own_curves(self, row: int) -> Curves | None:
        """Where a candidate's own light curve is: the files given, the dataset, or nowhere."""
        if self.in_files[row]:
            return self.file_curves
        return self.curves if self.in_dataset[row] else None

    def curve(self, row: int) -> dict[str, Any] | None:
        """A candidate's light curve with its reconstruction (None: not at hand)."""
        curves = self._own_curves(row)
        return None if curves is None else curves.curve(int(self.ids[row]))

    def gridded_features(self, row: int) -> dict[str, float]:
        """A candidate's gridded features, where its light curve is at hand ({}: not)."""
        curves = self._own_curves(row)
        return {} if curves is None else curves.features(int(self.ids[row]))

    def context(self, row: int) -> dict[str, Any]:
        """What the page shows as metadata: the table's context columns, else the dataset's."""
        features = self.gridded_features(row)
        out: dict[str, Any] = {}
        for name in ("split", "n_observed"):
            if name in self.table.columns:
                out[name] = _plain(self.table[name].iat[row])
        for name in CONTEXT_SHOWN:
            if name in self.table.columns:
                out[name] = _plain(self.table[name].iat[row])
            elif name in features:
                out[name] = _plain(features[name])
        return out

    def scores(self, row: int) -> dict[str, dict[str, float | None]]:
        """The detector's scores of one object, with each score's percentile in the pool."""
        out = {}
        for name in self.score_names:
            values = self.table[name].to_numpy(np.float64)
            value = float(values[row])
            # Among the objects that have this score (a review: missing ones counted below all).
            present = values[np.isfinite(values)]
            share = float(np.mean(present <= value)) if np.isfinite(value) else math.nan
            out[name] = {"value": _plain(value), "percentile": _plain(round(100.0 * share, 1))}
        return out


def _check_latents(
    table: pd.DataFrame, source: Path | None, run_table: pd.DataFrame, run_dir: Path
) -> None:
    """Refuse a score table whose latent means are not the run's (a table of another run: its
    neighbours and class guess would be looked up in this run's latent space).

    Raises:
        UserError: the table's `mu_*` columns are not the run's (a table without any is kept).
    """
    theirs = active.latent_columns(list(table.columns))
    mine = active.latent_columns(list(run_table.columns))
    if source is None or not theirs or theirs == mine:
        return
    raise UserError(
        f"the score table {source} has {len(theirs)} latent means (mu_*) where the run "
        f"{run_dir} has {len(mine)}: a table of another run? Review a table this run wrote (its "
        f"scores.parquet, or one of `plasticc-jax score --run {run_dir}`)"
    )


def check_checkpoint(source: Path, mine: dict[str, Any] | None, run_dir: Path) -> None:
    """Refuse a score table that names another checkpoint than `mine`, the run table's
    (`provenance.table_checkpoint`): a table of another run with latents of the same size, or one
    scored before the run was trained further. Tables that name none (CSV, older versions) are
    checked by their latents' count alone (`_check_latents`).

    Raises:
        UserError: the two tables name different checkpoints.
    """
    theirs = provenance.table_checkpoint(source)
    if theirs is None or mine is None or theirs == mine:
        return
    raise UserError(
        f"the score table {source} was scored with the checkpoint of epoch {theirs.get('epoch')} "
        f"(parameters {str(theirs.get('sha256'))[:12]}), the run {run_dir} has that of epoch "
        f"{mine.get('epoch')} ({str(mine.get('sha256'))[:12]}): a table of another run, or "
        f"scored before the run was trained further; score it again with "
        f"`plasticc-jax score --run {run_dir}`"
    )


def _class_label(value: Any) -> str:
    """A class as the detector wrote it (a class number or a name) -> its name ("unknown" for
    none: a blank name could not be chosen as a filter, a review found)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return plasticc.class_name(int(value)) if math.isfinite(value) else "unknown"
    return str(value).strip() or "unknown"


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (numpy types to Python ones; missing values and non-finite floats to
    None: pandas' NA read "<NA>" before, a review found)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6) if np.isfinite(value) else None
    return str(value)


def checked_table(table: pd.DataFrame, source: Path, models_dir: Path) -> pd.DataFrame:
    """The score table with the types the review relies on checked and made plain: whole numbers
    for `object_id`; numbers for `anomaly_score` and the latent means (none missing) and for the
    detector's other score columns (missing allowed); a flag for `is_galactic`.

    Raises:
        UserError: a missing column, or a value of another type; the message names the table,
            the column and the first offending value.
    """
    for column in ("object_id", "anomaly_score"):
        if column not in table.columns:
            raise UserError(
                f"the score table {source} has no {column!r} column (not a score table)"
            )

    def refuse(column: str, bad: np.ndarray, what: str) -> None:
        if bad.any():
            rows = np.flatnonzero(bad)
            value = table[column].iat[rows[0]]
            if isinstance(value, np.generic):  # shown as nan, not np.float64(nan)
                value = value.item()
            more = f" and {rows.size - 1} more" if rows.size > 1 else ""
            raise UserError(
                f"the score table {source}: column {column!r} must hold {what}: "
                f"{value!r} in row {rows[0] + 1}{more}"
            )

    out = table.copy()
    if pd.api.types.is_signed_integer_dtype(table["object_id"]):  # as `score` writes them
        whole = table["object_id"].notna().to_numpy()
    else:  # as floats (a CSV's): whole and within int64 (2**63 - 1 itself rounds to 2**63)
        ids = pd.to_numeric(table["object_id"], errors="coerce").to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(ids) & (ids == np.floor(ids)) & (np.abs(ids) < 2.0**63)
    refuse("object_id", ~whole, "whole numbers")
    out["object_id"] = pd.to_numeric(table["object_id"]).astype(np.int64)
    latents = active.latent_columns(list(table.columns))
    scores = active.score_columns(list(table.columns), models_dir)
    for column in dict.fromkeys([*latents, *scores]):
        values = pd.to_numeric(table[column], errors="coerce")
        not_number = values.isna().to_numpy() & table[column].notna().to_numpy()
        refuse(column, not_number, "numbers")
        if column == "anomaly_score" or column in latents:
            refuse(column, values.isna().to_numpy(), "a number for every object (none missing)")
        if column in latents:  # distances to an infinite mean failed in the neighbours (an audit)
            refuse(column, ~np.isfinite(values.to_numpy(np.float64)), "finite numbers")
        out[column] = values.astype(np.float64)
    if "is_galactic" in table.columns and not pd.api.types.is_bool_dtype(table["is_galactic"]):
        flags = table["is_galactic"].map(_flag)
        refuse("is_galactic", flags.isna().to_numpy(), "true or false (or 1 or 0)")
        out["is_galactic"] = flags.astype(bool)
    return out


def _flag(value: Any) -> bool | None:
    """A true/false value as a table may write it (bool, 1/0, "true"/"false"); None otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


# What `read_table` adds when a run's own `scores.parquet` is missing: it was never evaluated.
NOT_EVALUATED = ": run `plasticc-jax evaluate` first"


def read_table(path: Path, missing: str = "") -> pd.DataFrame:
    """A score table: `.parquet`, `.csv`, `.csv.gz`, or a folder of Parquet parts (what
    `score --dask` writes).

    Args:
        missing: what the error says to do when there is no table at `path`.

    Raises:
        UserError: it does not exist or cannot be read.
    """
    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        raise UserError(f"no score table at {path}{missing}")
    try:
        if path.is_dir() or path.name.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise UserError(f"cannot read the score table {path}: {error}") from None
