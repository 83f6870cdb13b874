"""The research API: load_encoder / load_vae from a run directory, as the README shows.

The run is the shared `tiny_run` (conftest), prepared and trained on synthetic PLAsTiCC files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plasticc_jax import readers
from plasticc_jax.dataset import load_split
from plasticc_jax.errors import UserError


@pytest.fixture(scope="module")
def test_split(tiny_run):
    return load_split(tiny_run.dataset_dir, "test")


@pytest.mark.slow
def test_encoder_matches_the_vae_and_chunks_consistently(tiny_run, test_split):
    from plasticc_jax import load_encoder, load_vae

    arrays = test_split
    latent = tiny_run.config.model.latent_dim
    encoder = load_encoder(tiny_run.run_dir)
    mu, logvar = encoder(arrays)
    assert isinstance(mu, np.ndarray) and mu.shape == logvar.shape == (len(arrays), latent)
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(logvar))

    vae = load_vae(tiny_run.run_dir)
    out = vae.evaluate(arrays, batch_size=16)
    np.testing.assert_allclose(out["mu"], mu, rtol=1e-5, atol=1e-6)
    n = len(arrays)
    for key, shape in [("recon_nll", (n,)), ("n_observed", (n,)), ("kl", (n,))]:
        assert out[key].shape == shape
    np.testing.assert_array_equal(out["n_observed"], arrays.mask.sum(axis=(1, 2)))
    assert np.all(out["kl"] >= 0)
    mean, sigma = vae.reconstruct(arrays)
    assert mean.shape == sigma.shape == arrays.flux.shape
    both = vae.evaluate(arrays, reconstruction=True)
    np.testing.assert_allclose(both["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both["recon_nll"], out["recon_nll"], rtol=1e-5)
    assert np.all(sigma >= tiny_run.config.model.min_model_sigma)

    # Small compiled batches and a dict input give the same numbers, one compile per shape.
    small = load_encoder(tiny_run.run_dir, max_batch=64)
    as_dict = {k: getattr(arrays, k) for k in ("flux", "flux_err", "mask", "features")}
    mu_small, _ = small(as_dict)
    np.testing.assert_allclose(mu_small, mu, rtol=1e-5, atol=1e-6)
    small(arrays.take(slice(0, 3)))
    small(arrays.take(slice(0, 5)))
    assert small._encode._cache_size() == 1  # every chunk padded to the one shape (64, ...)


def test_encoder_loads_without_the_decoder(tiny_run, test_split, tmp_path):
    from plasticc_jax import load_encoder

    copy = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, copy)
    decoders = list(copy.glob("checkpoints/*/decoder"))
    assert decoders  # the checkpoints' layout: else nothing below would be tested
    for decoder in decoders:
        shutil.rmtree(decoder)
    mu, _ = load_encoder(copy)(test_split)
    np.testing.assert_allclose(mu, load_encoder(tiny_run.run_dir)(test_split)[0])


def test_encode_table_applies_the_preprocessing_of_prepare(tiny_run, test_split, raw_files):
    from plasticc_jax import load_encoder

    encoder = load_encoder(tiny_run.run_dir)
    arrays = test_split
    metadata = readers.read_metadata(raw_files[0])
    lightcurves = readers.read_lightcurves(raw_files[1])
    wanted = arrays.object_id[:20]
    table = encoder.encode_table(
        lightcurves[lightcurves["object_id"].isin(wanted)],
        metadata[metadata["object_id"].isin(wanted)],
    )
    assert isinstance(table.rejected, pd.DataFrame)
    order = np.argsort(table.object_id)
    np.testing.assert_array_equal(table.object_id[order], np.sort(wanted))
    expected, _ = encoder(arrays.take(np.isin(arrays.object_id, wanted)))
    sorted_ids = np.sort(arrays.object_id[np.isin(arrays.object_id, wanted)])
    assert np.array_equal(sorted_ids, table.object_id[order])
    np.testing.assert_allclose(table.mu[order], expected, rtol=1e-4, atol=1e-5)
    # Column names in capitals, as the CSV readers and score_dataframe take them (found by a
    # review: encode_table refused them).
    upper = encoder.encode_table(
        lightcurves[lightcurves["object_id"].isin(wanted)].rename(columns=str.upper),
        metadata[metadata["object_id"].isin(wanted)].rename(columns=str.upper),
    )
    np.testing.assert_array_equal(upper.mu, table.mu)


def test_wrong_inputs_are_user_errors(tiny_run, test_split, tmp_path):
    from plasticc_jax import load_encoder

    encoder = load_encoder(tiny_run.run_dir)
    arrays = test_split
    with pytest.raises(UserError, match=r"flux has shape .*expects \(n, 6, 16\)"):
        encoder(
            {
                "flux": arrays.flux[:, :, :8],
                "flux_err": arrays.flux_err,
                "mask": arrays.mask,
                "features": arrays.features,
            }
        )
    with pytest.raises(UserError, match="is a dict without flux_err, mask, features"):
        encoder({"flux": arrays.flux})
    with pytest.raises(UserError, match=r"is a DataFrame: .*`encoder.encode_table`"):
        encoder(pd.DataFrame({"flux": [1.0]}))
    with pytest.raises(UserError, match="is a NoneType without flux, flux_err"):
        encoder(None)
    features = {"flux": arrays.flux, "flux_err": arrays.flux_err, "mask": arrays.mask}
    n = len(arrays.flux)
    with pytest.raises(UserError, match=rf"features has shape \(5, {arrays.features.shape[1]}\)"):
        encoder({**features, "features": arrays.features[:5]})
    with pytest.raises(UserError, match=rf"features has shape \({n}, 150\)") as refused:
        encoder({**features, "features": np.zeros((n, 150))})
    assert len(str(refused.value)) < 300  # names the shapes, not every feature
    with pytest.raises(UserError, match="not a run directory"):
        load_encoder(tmp_path)
    with pytest.raises(UserError, match=r"nope does not exist .*`make train`"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(UserError, match="is a file, not a run folder"):
        load_encoder(tiny_run.run_dir / "config.json")
    (tmp_path / "validation").mkdir()
    with pytest.raises(UserError, match="holds only `validate`'s output"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text((tiny_run.run_dir / "config.json").read_text())
    (tmp_path / "stats.json").write_text((tiny_run.run_dir / "stats.json").read_text())
    with pytest.raises(UserError, match="no checkpoints"):
        load_encoder(tmp_path)


@pytest.mark.slow
def test_readme_example_runs_in_a_fresh_interpreter(tiny_run, test_split, tmp_path):
    """The README's research-API example, verbatim, in a plain Python session.

    A project folder laid out as after `make prepare train` (runs/default-rare,
    data/processed/rare, data/raw) points at the tiny synthetic run.
    """
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "load_encoder(" in example and "encode_table(" in example
    (tmp_path / "runs").mkdir()
    (tmp_path / "data" / "processed").mkdir(parents=True)
    (tmp_path / "runs" / "default-rare").symlink_to(tiny_run.run_dir)
    (tmp_path / "data" / "processed" / "rare").symlink_to(tiny_run.dataset_dir)
    (tmp_path / "data" / "raw").symlink_to(tiny_run.workdir / "data" / "raw")
    check = "\nprint(mu.shape, logvar.shape, table.mu.shape[1])\n"
    done = subprocess.run(
        [sys.executable, "-c", example + check],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    n = len(test_split)
    assert done.stdout.strip() == f"({n}, 4) ({n}, 4) 4"


@pytest.mark.slow
def test_a_pickled_scorer_scores_alike_without_the_checkpoint(tiny_run, test_split, tmp_path):
    """What `score --dask` sends to each worker (the driver's `Scorer`, pickled) needs no file
    of the run on the other side and gives the same table."""
    import pickle

    from plasticc_jax.scoring import Scorer

    run_dir = Path(shutil.copytree(tiny_run.run_dir, tmp_path / "run"))
    scorer = Scorer.load(run_dir)
    size = len(pickle.dumps(scorer))
    expected, expected_rejected = scorer.table(test_split, "test")
    shipped = pickle.dumps(scorer)
    # The batch it scored (kept for the next call: tens of kB here) is not sent along.
    assert len(shipped) - size < 1_000
    shutil.rmtree(run_dir)
    received = pickle.loads(shipped)
    assert received.vae.epoch == scorer.vae.epoch
    table, rejected = received.table(test_split, "test")
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(rejected, expected_rejected)
    mu, _ = pickle.loads(pickle.dumps(scorer.vae.encoder))(test_split)
    np.testing.assert_array_equal(mu, scorer.vae.encoder(test_split)[0])


def test_encoder_arrays_of_different_objects_are_refused(tiny_run, test_split):
    from plasticc_jax import load_encoder

    encoder = load_encoder(tiny_run.run_dir)
    batch = test_split.to_dict()
    batch["flux_err"] = batch["flux_err"][:-1]
    with pytest.raises(UserError, match="flux_err holds"):
        encoder(batch)


def test_unusable_values_and_batch_sizes_are_user_errors(tiny_run, test_split):
    from plasticc_jax import load_encoder, load_vae

    encoder, vae = load_encoder(tiny_run.run_dir), load_vae(tiny_run.run_dir)
    few = test_split.take(np.arange(4))
    for batch_size in (-5, 0, 1.5, "64", True):
        with pytest.raises(UserError, match=r"batch_size=.*positive whole number"):
            vae.evaluate(few, batch_size=batch_size)
    assert np.allclose(vae.evaluate(few, batch_size=np.int64(2))["mu"], encoder(few)[0], atol=1e-5)
    observed = np.argwhere(few.mask)[0]
    for name, value in (("flux", np.nan), ("flux", np.inf), ("flux_err", 0.0)):
        batch = few.to_dict()
        batch[name] = batch[name].copy()
        batch[name][tuple(observed)] = value
        with pytest.raises(UserError, match=rf"row {observed[0]} \(object_id \d+\): an observed"):
            encoder(batch)
    batch["object_id"] = np.array(["a", "b", "c", "d"])  # any ids: named as they are
    with pytest.raises(UserError, match=rf"row {observed[0]} \(object_id [a-d]\)"):
        encoder(batch)
    # An infinite feature is refused (an audit: clipped without a word); NaN is undefined.
    batch = few.to_dict()
    batch["features"] = batch["features"].copy()
    batch["features"][2, 3] = -np.inf
    with pytest.raises(UserError, match=r"row 2 \(object_id \d+\): its feature \w+ is infinite"):
        encoder(batch)
    batch["features"][2, 3] = np.nan
    encoder(batch)
    unobserved = tuple(np.argwhere(~few.mask)[0])
    batch = few.to_dict()
    batch["flux"] = batch["flux"].copy()
    batch["flux"][unobserved] = np.nan  # not observed: ignored
    assert np.array_equal(encoder(batch)[0], encoder(few)[0])
    batch = few.to_dict()
    batch["mask"] = batch["mask"] * 0.5
    with pytest.raises(UserError, match="mask holds float64 values other than 0 and 1"):
        encoder(batch)
    batch["mask"] = few.mask.astype(np.int8)  # 1/0 is a mask
    assert np.array_equal(encoder(batch)[0], encoder(few)[0])
    with pytest.raises(UserError, match=r"^encode_table: the light curves are a dict: give"):
        encoder.encode_table({"object_id": [1]}, pd.DataFrame())
