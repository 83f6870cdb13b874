"""PLAsTiCC CSV files to fixed-shape tensors: readers, the time grid, features, streaming.

Formats recognised without flags (plain or gzip, detected by the file's first bytes):

- Kaggle: `training_set.csv`, `training_set_metadata.csv`, `test_set*.csv`,
  `test_set_metadata.csv`; columns `detected`, `ddf`, extra `gal_l`/`gal_b`; empty or NaN for a
  missing value; no `target` in the test metadata (the label becomes -1).
- Unblinded (Zenodo 2539456): `plasticc_{train,test}_lightcurves*.csv.gz`,
  `plasticc_{train,test}_metadata.csv.gz`; columns `detected_bool`, `ddf_bool`; space-padded
  fields; `-9` for a missing value; `true_target` is the label where `target` is absent. The truth
  columns (`true_*`, `tflux_*`, `libid_cadence`) are never read.

The grid, and why:

- **Reference time.** Each object is centred on t0, the MJD of its highest flux/flux_err among
  detected points (all points if none is detected). PLAsTiCC light curves span three years with
  seasonal gaps of about six months, and transients occupy weeks of them; aligning on the most
  significant point puts every transient's peak at the same place in the tensor, which an MLP needs
  (it has no translation invariance). Signal-to-noise rather than raw flux, so that one noisy point
  of a faint object does not win.
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

Per-object features (`FEATURE_NAMES`, raw and un-normalised; `FeatureStats` normalises them):
the log amplitude; what the window misses (per band: the weighted mean flux and the standard
deviation of flux, both over amplitude, and the fraction of detected points; overall: log10 of the
number of observations, log10(1 + days between the first and last detection) (0 with fewer than
two detections), and the fraction of points inside the window); and the metadata a model may use:
`ddf`, `hostgal_photoz`, `hostgal_photoz_err`, `distmod` (missing for galactic objects: 0, with
the indicator `is_galactic` = hostgal_photoz == 0), `mwebv`. Not `ra`/`decl`: sky position is the
survey footprint, not physics. Not `hostgal_specz`: it exists for few test objects (a train/test
shift a model would learn). Never the truth columns.

Streaming: light-curve files are read with pyarrow's streaming CSV reader in chunks of about
`data.chunk_rows` rows. PLAsTiCC files are grouped by object, so the trailing object of a chunk is
carried over to the next and each chunk holds whole objects; an object that reappears later is an
error (the file is not grouped). Memory is bounded by the chunk size, not by the input. Chunks are
gridded in worker threads while the next chunk is parsed; the output does not depend on the number
of workers or on the chunk size (every reduction is per object, in file order).
"""

from __future__ import annotations

import collections
import gzip
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm import tqdm

from plasticc_jax import plasticc
from plasticc_jax.config import DataConfig
from plasticc_jax.dataset import LightCurveArrays
from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)

NB = plasticc.N_PASSBANDS
_BANDS = plasticc.PASSBANDS
FEATURE_NAMES: tuple[str, ...] = (
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
# Metadata values shipped with each chunk, in this order (the last columns of FEATURE_NAMES).
_META_VALUES: tuple[str, ...] = ("ddf", "hostgal_photoz", "hostgal_photoz_err", "distmod", "mwebv")
# Columns where the unblinded release writes -9 for "missing" (never a valid value there).
_MINUS9_MEANS_MISSING: tuple[str, ...] = (
    "hostgal_specz",
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "mwebv",
)
_LC_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    "mjd": pa.float64(),
    "passband": pa.int64(),
    "flux": pa.float64(),
    "flux_err": pa.float64(),
    "detected": pa.bool_(),
}
_META_TYPES: dict[str, pa.DataType] = {
    "object_id": pa.int64(),
    **{c: pa.float64() for c in plasticc.METADATA_COLUMNS[1:]},
    "target": pa.float64(),
}
# Tokens pyarrow reads as null (its defaults), used when locating a bad value.
_NULL_TOKENS = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan"})
_NULL_TOKENS |= frozenset({"1.#ind", "1.#qnan", "n/a", "na", "nan", "null", "<na>"})
_BOOL_TOKENS = frozenset({"0", "1", "true", "false"})

# Rejection reasons (per object), in order of precedence; code 0 means accepted.
_REASONS: tuple[str, ...] = (
    "",
    "non-finite mjd",
    "non-finite flux (NaN or inf)",
    "flux_err not a positive finite number",
    "passband outside 0-5",
    "duplicated observation (same object, mjd and passband)",
    "fewer than {min_obs} observations",
)
NO_METADATA = "light curve without metadata"
NO_LIGHTCURVE = "metadata without light curve"


# ---------------------------------------------------------------------------------------------
# Input files.


@dataclass(frozen=True)
class InputFiles:
    """The files prepare reads: one format, one selection (train, test or all)."""

    fmt: str
    selection: str
    lightcurves: tuple[Path, ...]
    metadata: tuple[Path, ...]


_SELECTIONS = ("train", "test", "all")
_CSV = r"\.csv(?:\.gz)?"
_PATTERNS: dict[str, dict[str, tuple[str, str]]] = {
    # format -> set -> (light-curve regex, metadata regex), matched against file names.
    "unblinded": {
        "train": (rf"plasticc_train_lightcurves.*{_CSV}", rf"plasticc_train_metadata{_CSV}"),
        "test": (rf"plasticc_test_lightcurves.*{_CSV}", rf"plasticc_test_metadata{_CSV}"),
    },
    "kaggle": {
        "train": (rf"training_set{_CSV}", rf"training_set_metadata{_CSV}"),
        # test_set_sample.csv is a subset of test_set.csv: reading both would duplicate objects.
        "test": (rf"test_set(?!_metadata|_sample)[^/]*?{_CSV}", rf"test_set_metadata{_CSV}"),
    },
}


def find_inputs(raw_dir: Path, selection: str = "train") -> InputFiles | None:
    """The recognised input files in `raw_dir`, or None when it holds none.

    Args:
        raw_dir: folder to look in (not recursive).
        selection: `train` (the default data), `test`, or `all` (both sets).

    Raises:
        UserError: for an unknown selection, or a set with light curves but no metadata (or the
            reverse).
    """
    if selection not in _SELECTIONS:
        raise UserError(f"data.inputs={selection!r}: choose one of {', '.join(_SELECTIONS)}")
    raw_dir = Path(raw_dir)
    names = sorted(p.name for p in raw_dir.iterdir() if p.is_file()) if raw_dir.is_dir() else []
    sets = ("train", "test") if selection == "all" else (selection,)
    found: list[InputFiles] = []
    for fmt, patterns in _PATTERNS.items():
        lcs: list[Path] = []
        metas: list[Path] = []
        for name in sets:
            lc_re, meta_re = patterns[name]
            lc = [raw_dir / n for n in names if re.fullmatch(lc_re, n)]
            meta = [raw_dir / n for n in names if re.fullmatch(meta_re, n)]
            if bool(lc) != bool(meta):
                have, missing = (lc, "metadata") if lc else (meta, "light-curve")
                raise UserError(
                    f"{raw_dir}: found {', '.join(p.name for p in have)} but no {missing} file "
                    f"for the {name} set ({fmt} format); add it or remove the other"
                )
            lcs += lc
            metas += meta
        if lcs:
            found.append(InputFiles(fmt, selection, tuple(lcs), tuple(metas)))
    if not found:
        return None
    if len(found) > 1:
        log.warning(
            "%s holds both formats; using the %s files and ignoring the %s ones",
            raw_dir,
            found[0].fmt,
            found[1].fmt,
        )
    return found[0]


# ---------------------------------------------------------------------------------------------
# Low-level CSV access.


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _input_stream(path: Path) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)


def _header(path: Path) -> list[str]:
    """Raw column names of a CSV(.gz) file (as written, possibly space-padded)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as handle:
            line = handle.readline()
    except (OSError, EOFError) as error:
        raise UserError(
            f"{path}: the file is truncated or corrupt ({error}); fetch it again"
        ) from None
    if not line.strip():
        raise UserError(f"{path}: the file is empty (no header line); fetch it again")
    return line.decode("utf-8", errors="replace").rstrip("\r\n").split(",")


def _map_columns(
    path: Path, header: list[str], wanted: Sequence[str], aliases: dict[str, str], kind: str
) -> dict[str, str]:
    """Canonical name -> raw header name, for every wanted column; else a UserError."""
    by_name: dict[str, str] = {}
    for raw in header:
        name = raw.strip()
        by_name.setdefault(aliases.get(name, name), raw)
    missing = [c for c in wanted if c not in by_name]
    if missing:
        found = ", ".join(h.strip() for h in header)
        raise UserError(
            f"{path}: missing {kind} column(s) {', '.join(missing)}; found: {found}. Expected the "
            "Kaggle or the unblinded PLAsTiCC format (see README)"
        )
    return {c: by_name[c] for c in wanted}


def _bad_value_rows(values: pd.Series, dtype: pa.DataType) -> np.ndarray:
    """Boolean mask of strings that pyarrow cannot convert to `dtype` (nulls are fine)."""
    text = values.fillna("").astype(str).str.strip()
    null = text.str.lower().isin(_NULL_TOKENS)
    if pa.types.is_boolean(dtype):
        return (~null & ~text.str.lower().isin(_BOOL_TOKENS)).to_numpy()
    if pa.types.is_integer(dtype):  # pyarrow takes integer literals only ("2.0" is an error)
        return (~null & ~text.str.fullmatch(r"[+-]?\d+")).to_numpy()
    return (~null & pd.to_numeric(text.where(~null), errors="coerce").isna()).to_numpy()


def _locate_bad_value(path: Path, columns: dict[str, str], types: dict[str, pa.DataType]) -> str:
    """Find the first value that fails conversion: `column 'c', line n: 'value'`."""
    raw_types = {raw: pa.string() for raw in columns.values()}
    reader = pa_csv.open_csv(
        _input_stream(path),
        convert_options=pa_csv.ConvertOptions(
            include_columns=list(columns.values()), column_types=raw_types
        ),
    )
    rows_before = 0
    for batch in reader:
        frame = batch.to_pandas()
        for canonical, raw in columns.items():
            bad = np.flatnonzero(_bad_value_rows(frame[raw], types[canonical]))
            if bad.size:
                line = rows_before + int(bad[0]) + 2  # line 1 is the header
                value = frame[raw].iloc[bad[0]]
                kind = types[canonical]
                return f"column {canonical!r}, line {line}: {value!r} is not a valid {kind}"
        rows_before += batch.num_rows
    return "a value could not be converted"


def _arrow_error(path: Path, error: Exception, columns: dict[str, str], types) -> UserError:
    """Turn a pyarrow read error into a UserError naming the file (and line, where it can)."""
    text = str(error)
    if isinstance(error, pa.ArrowInvalid) and "conversion error" in text:
        try:
            where = _locate_bad_value(path, columns, types)
        except (pa.ArrowException, OSError):
            where = text
        return UserError(f"{path}: non-numeric value in {where}; fix or remove that line")
    if isinstance(error, pa.ArrowInvalid) and "Empty CSV file" in text:
        return UserError(f"{path}: the file is empty; fetch it again")
    if isinstance(error, OSError | EOFError) and not isinstance(error, pa.ArrowInvalid):
        return UserError(f"{path}: the file is truncated or corrupt ({text}); fetch it again")
    return UserError(f"{path}: cannot parse the CSV ({text})")


# ---------------------------------------------------------------------------------------------
# Metadata.


def read_metadata(path: Path) -> pd.DataFrame:
    """Read a whole metadata file (either format) into canonical columns.

    Returns:
        One row per object: object_id (int64), ra, decl (deg), ddf (int8), hostgal_specz,
        hostgal_photoz, hostgal_photoz_err, distmod, mwebv (float64, NaN where missing: `-9` and
        empty both mean missing), target (int64; `target`, else `true_target`, else -1). Truth
        columns are not read.

    Raises:
        UserError: unreadable file, missing column, non-numeric value (with its line), a missing
            or duplicated object_id.
    """
    path = Path(path)
    header = _header(path)
    stripped = [h.strip() for h in header]
    label = next((c for c in plasticc.LABEL_COLUMNS if c in stripped), None)
    aliases = {**plasticc.METADATA_ALIASES, **({label: "target"} if label else {})}
    wanted = list(plasticc.METADATA_COLUMNS) + (["target"] if label else [])
    columns = _map_columns(path, header, wanted, aliases, "metadata")
    types = {c: _META_TYPES[c] for c in columns}
    try:
        table = pa_csv.read_csv(
            _input_stream(path),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(columns.values()),
                column_types={columns[c]: t for c, t in types.items()},
            ),
        )
    except (pa.ArrowException, OSError, EOFError) as error:
        raise _arrow_error(path, error, columns, types) from None
    ids = table.column(columns["object_id"])
    if ids.null_count:
        line = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]) + 2
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    ids = ids.to_numpy()
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        oid = int(ids[order][repeated[0]])
        lines = (np.flatnonzero(ids == oid) + 2).tolist()
        raise UserError(f"{path}: object {oid} appears more than once (lines {lines})")
    # Column by column, dropping each Arrow column once converted: the full test set's metadata
    # (3.5 million rows) then peaks at about twice its size, not four times.
    arrays: dict[str, np.ndarray] = {"object_id": ids}
    for name in [*plasticc.METADATA_COLUMNS[1:], "target"]:
        if name == "target" and not label:
            arrays[name] = np.full(ids.size, plasticc.UNKNOWN_TARGET, np.int64)
            continue
        values = table.column(columns[name]).to_numpy(zero_copy_only=False)
        table = table.drop_columns([columns[name]])
        if name in _MINUS9_MEANS_MISSING:
            values = np.where(values == plasticc.MISSING_VALUE, np.nan, values)
        if name == "ddf":
            values = np.nan_to_num(values).astype(np.int8)
        elif name == "target":
            values = np.where(np.isnan(values), plasticc.UNKNOWN_TARGET, values).astype(np.int64)
        arrays[name] = values
    del table
    # Arrow's allocator keeps freed pages (measured: 550 MB for 3.5 million rows); hand them back.
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(arrays)


def read_metadata_files(paths: Sequence[Path]) -> pd.DataFrame:
    """Read and concatenate metadata files; adds `source` (index into `paths`)."""
    frames = []
    for index, path in enumerate(paths):
        frame = read_metadata(path)
        frame["source"] = np.int32(index)
        frames.append(frame)
    if len(frames) == 1:
        metadata = frames[0]
    else:
        metadata = pd.concat(frames, ignore_index=True) if frames else _empty_metadata()
    duplicated = metadata["object_id"].duplicated()
    if duplicated.any():
        oid = int(metadata["object_id"][duplicated].iloc[0])
        files = [str(paths[i]) for i in metadata["source"][metadata["object_id"] == oid]]
        raise UserError(f"object {oid} is in more than one metadata file: {', '.join(files)}")
    return metadata


def _empty_metadata() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in plasticc.METADATA_COLUMNS})
    frame["object_id"] = frame["object_id"].astype(np.int64)
    frame["target"] = pd.Series(dtype=np.int64)
    frame["source"] = pd.Series(dtype=np.int32)
    return frame


# ---------------------------------------------------------------------------------------------
# Light curves: chunks of whole objects.


@dataclass
class _Rows:
    """Light-curve rows as NumPy arrays (canonical columns), with their place in the file."""

    object_id: np.ndarray
    mjd: np.ndarray
    passband: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray
    first_row: int  # index of the first row in its file (0 = the line after the header)

    def __len__(self) -> int:
        return int(self.object_id.shape[0])

    def slice(self, start: int, stop: int | None = None) -> _Rows:
        cut = slice(start, stop)
        return _Rows(
            self.object_id[cut],
            self.mjd[cut],
            self.passband[cut],
            self.flux[cut],
            self.flux_err[cut],
            self.detected[cut],
            self.first_row + start,
        )

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(
            self.object_id[index],
            self.mjd[index],
            self.passband[index],
            self.flux[index],
            self.flux_err[index],
            self.detected[index],
            self.first_row,
        )

    @staticmethod
    def concatenate(parts: list[_Rows]) -> _Rows:
        names = ("object_id", "mjd", "passband", "flux", "flux_err", "detected")
        arrays = [np.concatenate([getattr(p, n) for p in parts]) for n in names]
        return _Rows(*arrays, parts[0].first_row)


def _rows_from_tables(path: Path, tables: list[pa.Table], first_row: int) -> _Rows:
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = table.column("object_id")
    if ids.null_count:
        missing = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        line = first_row + int(missing[0]) + 2
        raise UserError(f"{path}: line {line} has no object_id; fix or remove that line")
    # Nulls: a missing passband is out of range (-1), a missing detection flag is "not detected",
    # missing floats are NaN (and rejected per object).
    passband = table.column("passband").fill_null(-1)
    return _Rows(
        ids.to_numpy(),
        table.column("mjd").to_numpy(zero_copy_only=False),
        passband.to_numpy(),
        table.column("flux").to_numpy(zero_copy_only=False),
        table.column("flux_err").to_numpy(zero_copy_only=False),
        table.column("detected").fill_null(False).to_numpy(zero_copy_only=False),
        first_row,
    )


def _read_rows(path: Path, chunk_rows: int) -> Iterator[_Rows]:
    """Yield a light-curve file as blocks of at least `chunk_rows` rows (the last may be fewer)."""
    path = Path(path)
    columns = _map_columns(
        path, _header(path), plasticc.LIGHTCURVE_COLUMNS, plasticc.LIGHTCURVE_ALIASES, "light-curve"
    )
    # About 40 bytes per row. Blocks of 1 MiB parse fastest (measured: 32 MiB is 2x slower) and
    # are gathered up to chunk_rows.
    block_size = int(np.clip(chunk_rows * 48, 1 << 16, 1 << 20))
    options = pa_csv.ConvertOptions(
        include_columns=list(columns.values()),
        column_types={columns[c]: t for c, t in _LC_TYPES.items()},
    )
    names = {raw: c for c, raw in columns.items()}
    try:
        reader = pa_csv.open_csv(
            _input_stream(path),
            read_options=pa_csv.ReadOptions(block_size=block_size),
            convert_options=options,
        )
        pending: list[pa.Table] = []
        n_pending = first_row = 0
        for batch in reader:
            table = pa.Table.from_batches([batch])
            pending.append(table.rename_columns([names[n] for n in table.column_names]))
            n_pending += batch.num_rows
            if n_pending >= chunk_rows:
                yield _rows_from_tables(path, pending, first_row)
                first_row += n_pending
                pending, n_pending = [], 0
        if pending:
            yield _rows_from_tables(path, pending, first_row)
    except (pa.ArrowException, OSError, EOFError) as error:
        raise _arrow_error(path, error, columns, _LC_TYPES) from None


def _object_chunks(path: Path, chunk_rows: int) -> Iterator[_Rows]:
    """Blocks of rows cut at object boundaries: the trailing object moves to the next block."""
    carry: _Rows | None = None
    for rows in _read_rows(path, chunk_rows):
        if carry is not None:
            rows = _Rows.concatenate([carry, rows])
        ids = rows.object_id
        # Start of the trailing run of the last object id.
        changes = np.flatnonzero(ids[1:] != ids[:-1])
        if changes.size == 0:
            carry = rows  # one object so far: keep reading
            continue
        cut = int(changes[-1]) + 1
        yield rows.slice(0, cut)
        carry = rows.slice(cut)
    if carry is not None and len(carry):
        yield carry


def read_lightcurves(path: Path) -> pd.DataFrame:
    """Read a (small) light-curve file whole, in canonical columns.

    Returns:
        object_id (int64), mjd (days), passband (int64, 0-5 = ugrizy), flux, flux_err (FLUXCAL,
        float64), detected (bool); rows in file order.
    """
    parts = list(_read_rows(Path(path), 1 << 62))
    rows = _Rows.concatenate(parts) if parts else None
    columns = plasticc.LIGHTCURVE_COLUMNS
    if rows is None:
        return pd.DataFrame({c: pd.Series(dtype=_LC_TYPES[c].to_pandas_dtype()) for c in columns})
    return pd.DataFrame({c: getattr(rows, c) for c in columns})


# ---------------------------------------------------------------------------------------------
# Gridding one chunk (runs in worker processes).


@dataclass(frozen=True)
class _GridParams:
    n_time_bins: int
    window_before: float
    window_after: float
    min_observations: int
    anomaly_classes: tuple[int, ...]

    @staticmethod
    def from_config(data: DataConfig, anomaly_classes: Sequence[int]) -> _GridParams:
        return _GridParams(
            data.n_time_bins,
            data.window_before,
            data.window_after,
            data.min_observations,
            tuple(int(c) for c in anomaly_classes),
        )


@dataclass
class _Job:
    """Rows of whole objects (grouped) and, per object, its metadata values and label."""

    rows: _Rows
    starts: np.ndarray  # (m,) first row of each object
    meta: np.ndarray  # (m, len(_META_VALUES)) float32
    target: np.ndarray  # (m,) int


@dataclass
class _JobResult:
    arrays: LightCurveArrays
    rejected_ids: np.ndarray
    rejected_codes: np.ndarray


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


def _reject_codes(rows: _Rows, o: np.ndarray, counts: np.ndarray, min_obs: int) -> np.ndarray:
    """(m,) int8 rejection code per object (0: accepted), first reason in `_REASONS` order."""
    m = counts.size
    codes = np.zeros(m, np.int8)
    err = rows.flux_err
    bad_rows = [
        ~np.isfinite(rows.mjd),
        ~np.isfinite(rows.flux),
        ~(np.isfinite(err) & (err > 0)),
        (rows.passband < 0) | (rows.passband >= NB),
    ]
    for code, bad in enumerate(bad_rows, start=1):
        if bad.any():
            hit = np.bincount(o[bad], minlength=m) > 0
            codes[(codes == 0) & hit] = code
    dup = _duplicated_objects(o, rows.mjd, rows.passband, m)
    codes[(codes == 0) & dup] = 5
    codes[(codes == 0) & (counts < min_obs)] = 6
    return codes


def _grid_job(job: _Job, params: _GridParams) -> _JobResult:
    """Grid every valid object of a chunk at once (no per-object Python loop)."""
    rows, starts = job.rows, job.starts
    n, m = len(rows), starts.size
    counts = np.diff(np.r_[starts, n])
    o = np.repeat(np.arange(m), counts)
    codes = _reject_codes(rows, o, counts, params.min_observations) if m else np.zeros(0, np.int8)
    keep = codes == 0
    if not keep.all():
        rows = rows.take(keep[o])
        counts, meta, target = counts[keep], job.meta[keep], job.target[keep]
        m = counts.size
        starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64) if m else counts
        o = np.repeat(np.arange(m), counts)
    else:
        meta, target = job.meta, job.target
    arrays = _grid_valid(rows, o, starts, counts, meta, target, params)
    bad = ~keep
    return _JobResult(arrays, job.rows.object_id[job.starts[bad]], codes[bad])


def _grid_valid(
    rows: _Rows,
    o: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    meta: np.ndarray,
    target: np.ndarray,
    params: _GridParams,
) -> LightCurveArrays:
    m, n_t = counts.size, params.n_time_bins
    if m == 0:
        return empty_arrays(n_t)
    mjd, pb, flux, err, det = rows.mjd, rows.passband, rows.flux, rows.flux_err, rows.detected
    weight = 1.0 / err**2
    snr = flux / err

    # Reference time: the highest signal-to-noise detection (any point if none is detected).
    has_detection = np.logical_or.reduceat(det, starts)
    score = np.where(det | ~has_detection[o], snr, -np.inf)
    best = np.maximum.reduceat(score, starts)
    first_best = np.minimum.reduceat(np.where(score == best[o], np.arange(o.size), o.size), starts)
    t0 = mjd[first_best]

    width = (params.window_before + params.window_after) / n_t
    bins = np.floor((mjd - t0[o] + params.window_before) / width)
    inside = (bins >= 0) & (bins < n_t)
    cell = ((o * NB + pb) * n_t + bins.astype(np.int64))[inside]
    size = m * NB * n_t
    sum_w = np.bincount(cell, weight[inside], minlength=size)
    sum_wf = np.bincount(cell, (weight * flux)[inside], minlength=size)
    amplitude = np.maximum(np.maximum.reduceat(np.abs(flux), starts), 1.0)
    mask = sum_w > 0
    safe_w = np.where(mask, sum_w, 1.0)
    scale = np.repeat(amplitude, NB * n_t)
    grid_flux = np.where(mask, sum_wf / safe_w / scale, 0.0)
    grid_err = np.where(mask, 1.0 / np.sqrt(safe_w) / scale, 0.0)

    # Whole-light-curve summaries per (object, band).
    band = o * NB + pb
    n_band = np.bincount(band, minlength=m * NB)
    safe_n = np.maximum(n_band, 1)
    w_band = np.bincount(band, weight, minlength=m * NB)
    mean_w = np.bincount(band, weight * flux, minlength=m * NB) / np.where(n_band, w_band, 1.0)
    mean_u = np.bincount(band, flux, minlength=m * NB) / safe_n
    var = np.bincount(band, (flux - mean_u[band]) ** 2, minlength=m * NB) / safe_n
    frac_det = np.bincount(band, det, minlength=m * NB) / safe_n
    amp_band = np.repeat(amplitude, NB)
    n_det = np.add.reduceat(det.astype(np.int64), starts)
    first_det = np.minimum.reduceat(np.where(det, mjd, np.inf), starts)
    last_det = np.maximum.reduceat(np.where(det, mjd, -np.inf), starts)
    duration = np.where(n_det >= 2, last_det - first_det, 0.0)
    in_window = np.bincount(o, inside, minlength=m) / counts

    ddf, photoz, photoz_err, distmod, mwebv = np.nan_to_num(meta, nan=0.0).T
    features = np.column_stack(
        [
            np.log10(amplitude),
            np.log10(counts),
            np.log10(1.0 + duration),
            in_window,
            (mean_w / amp_band).reshape(m, NB),
            (np.sqrt(var) / amp_band).reshape(m, NB),
            frac_det.reshape(m, NB),
            ddf,
            photoz,
            photoz_err,
            distmod,
            (photoz == 0).astype(np.float64),
            mwebv,
        ]
    ).astype(np.float32)
    shape = (m, NB, n_t)
    return LightCurveArrays(
        object_id=rows.object_id[starts].astype(np.int64),
        target=target.astype(np.int32),
        is_anomaly=np.isin(target, params.anomaly_classes),
        flux=grid_flux.reshape(shape).astype(np.float32),
        flux_err=grid_err.reshape(shape).astype(np.float32),
        mask=mask.reshape(shape),
        features=features,
    )


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


# ---------------------------------------------------------------------------------------------
# Metadata lookup and the stream.


class _MetaIndex:
    """Metadata sorted by object_id, for vectorised lookup, plus which objects were seen."""

    def __init__(self, metadata: pd.DataFrame, exclude: np.ndarray | None = None) -> None:
        order = np.argsort(metadata["object_id"].to_numpy(), kind="stable")
        self.ids = metadata["object_id"].to_numpy()[order]
        # float32: the features are float32 anyway, and this table has one row per input object.
        self.values = np.empty((order.size, len(_META_VALUES)), np.float32)
        for column, name in enumerate(_META_VALUES):
            self.values[:, column] = metadata[name].to_numpy()[order]
        self.target = metadata["target"].to_numpy(np.int64)[order]
        source = metadata["source"] if "source" in metadata else pd.Series(0, metadata.index)
        self.source = source.to_numpy()[order]
        self.seen = np.zeros(self.ids.size, bool)
        self.excluded = np.zeros(self.ids.size, bool)
        if exclude is not None and len(exclude):
            self.excluded = np.isin(self.ids, exclude)
        self.seen_elsewhere: dict[int, str] = {}  # light-curve objects without metadata

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(self.ids, ids), max(self.ids.size - 1, 0))
        found = self.ids[pos] == ids if self.ids.size else np.zeros(ids.size, bool)
        return pos, found


def _rejections(
    ids: np.ndarray, reasons: Sequence[str] | str, source: Sequence[str] | str
) -> pd.DataFrame:
    """A rejection table (object_id, reason, source); building an empty one is skipped (it costs
    about 0.3 ms per chunk, measured 15% of the whole stream)."""
    if not len(ids):
        return _NO_REJECTIONS
    return pd.DataFrame(
        {"object_id": np.asarray(ids, np.int64), "reason": reasons, "source": source}
    )


_NO_REJECTIONS = pd.DataFrame(
    {
        "object_id": np.zeros(0, np.int64),
        "reason": np.zeros(0, object),
        "source": np.zeros(0, object),
    }
)


def _plan(rows: _Rows, path: Path, index: _MetaIndex) -> tuple[_Job, pd.DataFrame]:
    """Checks of one chunk before gridding (in order, in the reading thread): grouping by object,
    the metadata join, exclusions."""
    ids = rows.object_id
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_ids = ids[starts]
    unique, counts = np.unique(run_ids, return_counts=True)
    if (counts > 1).any():
        oid = int(unique[counts > 1][0])
        lines = rows.first_row + starts[run_ids == oid][:2] + 2
        raise UserError(
            f"{path}: rows of object {oid} are not contiguous (lines {lines[0]} and {lines[1]}); "
            "light-curve files must be grouped by object_id (sort the file by object_id)"
        )
    pos, found = index.lookup(run_ids)
    again = found & index.seen[pos]
    lost = run_ids[~found]
    if lost.size:
        again_lost = [int(i) for i in lost if int(i) in index.seen_elsewhere]
        if again_lost:
            again[np.flatnonzero(run_ids == again_lost[0])] = True
    if again.any():
        oid = int(run_ids[again][0])
        line = rows.first_row + int(starts[again][0]) + 2
        raise UserError(
            f"{path}: object {oid} reappears at line {line} after rows of other objects; "
            "light-curve files must be grouped by object_id (sort the file by object_id), and an "
            "object must not be in two files"
        )
    index.seen[pos[found]] = True
    for oid in lost:
        index.seen_elsewhere[int(oid)] = path.name
    keep = found.copy()
    keep[found] = ~index.excluded[pos[found]]
    rejected = _rejections(lost, NO_METADATA, path.name)
    if not keep.all():
        counts_rows = np.diff(np.r_[starts, len(rows)])
        rows = rows.take(np.repeat(keep, counts_rows))
        kept_counts = counts_rows[keep]
        starts = np.r_[0, np.cumsum(kept_counts)[:-1]].astype(np.int64)
        starts = starts[: kept_counts.size]
        pos = pos[keep]
    else:
        pos = pos[found]
    return _Job(rows, starts, index.values[pos], index.target[pos]), rejected


def _finish(
    result: _JobResult, rejected: pd.DataFrame, source: str, min_obs: int
) -> tuple[LightCurveArrays, pd.DataFrame]:
    reasons = [_REASONS[c].format(min_obs=min_obs) for c in result.rejected_codes]
    own = _rejections(result.rejected_ids, reasons, source)
    if not len(rejected) or not len(own):
        return result.arrays, own if len(own) else rejected
    return result.arrays, pd.concat([rejected, own], ignore_index=True)


def stream_grids(
    lightcurve_paths: Sequence[Path],
    metadata_paths: Sequence[Path],
    data: DataConfig,
    workers: int | None = None,
    anomaly_classes: Sequence[int] = (),
    *,
    metadata: pd.DataFrame | None = None,
    exclude: np.ndarray | None = None,
    file_rows: list[int] | None = None,
) -> Iterator[tuple[LightCurveArrays, pd.DataFrame]]:
    """Grid light-curve files chunk by chunk, in file order, at memory bounded by the chunk size.

    Args:
        lightcurve_paths: light-curve CSV(.gz) files, each grouped by object_id.
        metadata_paths: their metadata files (read whole; small).
        data: grid and chunk settings (`n_time_bins`, `window_*`, `min_observations`,
            `chunk_rows`, `workers`).
        workers: chunks gridded at once, in threads, while the next chunk is read (None:
            `data.workers`; 1: read and grid in turn). The output is the same for any number.
        anomaly_classes: classes flagged `is_anomaly`.
        metadata: already-read metadata (`read_metadata_files`), instead of reading the paths.
        exclude: object ids to skip silently (the caller accounts for them).
        file_rows: if given, receives the number of data rows of each light-curve file.

    Yields:
        (arrays, rejections) per chunk, in input order: the gridded objects, and a frame
        (object_id, reason, source) of the objects rejected. After the last chunk, one more item
        with no objects lists the metadata objects that had no light curve.
    """
    if metadata is None:
        metadata = read_metadata_files(metadata_paths)
    index = _MetaIndex(metadata, exclude)
    params = _GridParams.from_config(data, anomaly_classes)
    workers = data.workers if workers is None else workers
    chunk_rows = max(int(data.chunk_rows), 1)

    def planned() -> Iterator[tuple[_Job, pd.DataFrame, str, int]]:
        for path in map(Path, lightcurve_paths):
            n_rows = 0
            for rows in _object_chunks(path, chunk_rows):
                n_rows += len(rows)
                job, rejected = _plan(rows, path, index)
                yield job, rejected, path.name, len(rows)
            if file_rows is not None:
                file_rows.append(n_rows)

    progress = tqdm(unit=" rows", unit_scale=True, desc="gridding", disable=None, leave=False)
    with progress, ThreadPoolExecutor(max(workers, 1)) as pool:
        # Threads, not processes: parsing (pyarrow) and gridding (NumPy) run in C without the GIL,
        # so they overlap; processes would pickle every chunk (measured slower, see README).
        # A bounded queue of chunks in flight keeps memory flat and the order fixed.
        queue: collections.deque[tuple[Future, pd.DataFrame, str, int]] = collections.deque()
        for job, rejected, source, n_rows in planned():
            queue.append((pool.submit(_grid_job, job, params), rejected, source, n_rows))
            while len(queue) > max(workers - 1, 0):
                future, rej, src, count = queue.popleft()
                progress.update(count)
                yield _finish(future.result(), rej, src, params.min_observations)
        while queue:
            future, rej, src, count = queue.popleft()
            progress.update(count)
            yield _finish(future.result(), rej, src, params.min_observations)

    # Metadata objects whose light curve never came.
    unseen = ~index.seen & ~index.excluded
    names = [Path(p).name for p in metadata_paths] or ["metadata"]
    sources = [names[min(int(s), len(names) - 1)] for s in index.source[unseen]]
    yield empty_arrays(params.n_time_bins), _rejections(index.ids[unseen], NO_LIGHTCURVE, sources)


def grid_lightcurves(
    lightcurves: pd.DataFrame,
    metadata: pd.DataFrame,
    data: DataConfig,
    anomaly_classes: Sequence[int] = (),
) -> tuple[LightCurveArrays, pd.DataFrame]:
    """Grid in-memory tables (any row order) in this process.

    Args:
        lightcurves: columns object_id, mjd, passband, flux, flux_err, detected (or
            `detected_bool`).
        metadata: canonical metadata (`read_metadata`); `ddf_bool` and `-9` are accepted too.
        data: grid settings.
        anomaly_classes: classes flagged `is_anomaly`.

    Returns:
        The gridded objects (sorted by object_id) and the rejections (object_id, reason, source).
    """
    lcs = lightcurves.rename(columns=plasticc.LIGHTCURVE_ALIASES)
    meta = metadata.rename(columns=plasticc.METADATA_ALIASES).copy()
    missing = [c for c in plasticc.LIGHTCURVE_COLUMNS if c not in lcs]
    missing_meta = [c for c in ("object_id", *_META_VALUES) if c not in meta]
    if missing or missing_meta:
        raise UserError(
            f"grid_lightcurves: missing columns {missing + missing_meta}; light curves have "
            f"{list(lightcurves.columns)}, metadata {list(metadata.columns)}"
        )
    for column in _MINUS9_MEANS_MISSING:
        if column in meta:
            meta[column] = meta[column].mask(meta[column] == plasticc.MISSING_VALUE)
    if "target" not in meta:
        meta["target"] = plasticc.UNKNOWN_TARGET
    meta["target"] = meta["target"].fillna(plasticc.UNKNOWN_TARGET).astype(np.int64)
    if meta["object_id"].duplicated().any():
        oid = int(meta["object_id"][meta["object_id"].duplicated()].iloc[0])
        raise UserError(f"grid_lightcurves: object {oid} appears more than once in the metadata")
    order = np.argsort(lcs["object_id"].to_numpy(), kind="stable")
    rows = _Rows(
        lcs["object_id"].to_numpy(np.int64)[order],
        lcs["mjd"].to_numpy(np.float64)[order],
        lcs["passband"].to_numpy(np.int64)[order],
        lcs["flux"].to_numpy(np.float64)[order],
        lcs["flux_err"].to_numpy(np.float64)[order],
        lcs["detected"].to_numpy().astype(bool)[order],
        0,
    )
    params = _GridParams.from_config(data, anomaly_classes)
    index = _MetaIndex(meta)
    parts: list[pd.DataFrame] = []
    arrays = empty_arrays(params.n_time_bins)
    if len(rows):
        job, rejected = _plan(rows, Path("lightcurves"), index)
        arrays, rejected = _finish(
            _grid_job(job, params), rejected, "lightcurves", params.min_observations
        )
        parts.append(rejected)
    unseen = ~index.seen
    parts.append(_rejections(index.ids[unseen], NO_LIGHTCURVE, "metadata"))
    return arrays, pd.concat(parts, ignore_index=True)
