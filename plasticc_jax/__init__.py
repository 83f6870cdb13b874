"""plasticc_jax: find unknown transients in survey light curves with a JAX/Flax VAE latent space.

The public API for research code (everything else is internal and free to change):

- `load_encoder(run_dir) -> Encoder`: the trained encoder; `encoder(batch) -> (mu, logvar)`,
  `encoder.encode_table(lightcurves_df, metadata_df)`.
- `load_vae(run_dir) -> TrainedVae`: encoder and decoder; `evaluate(arrays)`, `reconstruct(arrays)`.
- `Config`, `load_preset`: configuration; the stages are `plasticc_jax.<stage>.<stage>(config,
  workdir)` for prepare, train and evaluate (modules of those names, hence not re-exported here),
  given a config resolved once with `plasticc_jax.config.resolve`.
- `LightCurveArrays`, `FeatureStats`, `load_split`: the prepared dataset.
- `score_dataframe(rows, run)`: light-curve rows (a pandas DataFrame) to one row of scores
  per object, the function to map over Dask or Spark partitions (README: Beyond one machine);
  `Scorer.load(run_dir)`: a run loaded once and checked, to pass as `run` (or send to workers).

Names are imported on first use, so `import plasticc_jax` (and the command line) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plasticc_jax.config import Config
    from plasticc_jax.config_io import load_preset
    from plasticc_jax.dataset import FeatureStats, LightCurveArrays, load_split
    from plasticc_jax.encoder import EncodedTable, Encoder, TrainedVae, load_encoder, load_vae
    from plasticc_jax.errors import UserError
    from plasticc_jax.scoring import Scorer, score_dataframe

__version__ = "0.1.0"

__all__ = [
    "Config",
    "EncodedTable",
    "Encoder",
    "FeatureStats",
    "LightCurveArrays",
    "Scorer",
    "TrainedVae",
    "UserError",
    "load_encoder",
    "load_preset",
    "load_split",
    "load_vae",
    "score_dataframe",
]

_MODULES: dict[str, str] = {
    "Config": "plasticc_jax.config",
    "load_preset": "plasticc_jax.config_io",
    "FeatureStats": "plasticc_jax.dataset",
    "LightCurveArrays": "plasticc_jax.dataset",
    "load_split": "plasticc_jax.dataset",
    "EncodedTable": "plasticc_jax.encoder",
    "Encoder": "plasticc_jax.encoder",
    "TrainedVae": "plasticc_jax.encoder",
    "load_encoder": "plasticc_jax.encoder",
    "load_vae": "plasticc_jax.encoder",
    "UserError": "plasticc_jax.errors",
    "Scorer": "plasticc_jax.scoring",
    "score_dataframe": "plasticc_jax.scoring",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'plasticc_jax' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
