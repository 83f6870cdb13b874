"""The review (issue 15) without a browser: the labels file, the active model, the API over plain
HTTP in-process, the simulated expert and `score --review-labels`. The browser tests are in
test_review_browser.py."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from conftest import hold_lock, tiny_config

from plasticc_jax.dataset import SPLITS, LightCurveArrays, iter_split, read_manifest
from plasticc_jax.errors import UserError
from plasticc_jax.review import active, labels, simulate
from plasticc_jax.review.labels import Answer, LabelStore, read_answers
from plasticc_jax.review.pool import Curves, Pool, same_objects
from plasticc_jax.review.server import ReviewServer, browser_opened, open_review
from plasticc_jax.review.session import ReviewSession, page_id

# --- the labels file -----------------------------------------------------------------------


def test_answers_survive_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    store = LabelStore(path)
    store.append(Answer.now(1, labels.ANOMALY, 1))
    store.append(Answer.now(2, labels.SKIP))
    intact = path.read_bytes()
    with open(path, "ab") as handle:  # what a kill -9 in the middle of a write leaves
        handle.write(b'{"object_id":3,"lab')
    assert [a.object_id for a in read_answers(path)] == [1, 2]
    store = LabelStore(path)  # reopening moves the torn line aside before the next answer
    assert labels.torn_path(path).read_bytes() == b'{"object_id":3,"lab\n'
    store.append(Answer.now(3, labels.NOT_INTERESTING))
    assert [(a.object_id, a.label) for a in read_answers(path)] == [
        (1, "anomaly"),
        (2, "skip"),
        (3, "not_interesting"),
    ]
    assert path.read_bytes().endswith(b"\n")
    # A last line edited by hand (an audit found it cut off as "torn"): refused, file untouched.
    for edited in (
        intact + b'{"object_id": 3, "label": "anomaly",}',
        intact + b'{"object_id":3,"label":"anomaly"}}',  # without spaces too (a later audit)
    ):
        path.write_bytes(edited)
        with pytest.raises(UserError, match="line 3: not a review answer"):
            LabelStore(path)
        assert path.read_bytes() == edited
    for short in (b"{", b'{"obj'):  # torn within the first bytes: still what a kill leaves
        path.write_bytes(intact + short)
        assert [a.object_id for a in read_answers(path)] == [1, 2]


def test_a_damaged_line_in_the_middle_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"object_id": 1, "label": "anomaly"}\nnot json\n')
    with pytest.raises(UserError, match="line 2"):
        read_answers(path)
    path.write_text('{"object_id": 1, "label": "maybe"}\n')
    with pytest.raises(UserError, match="line 1"):
        read_answers(path)
    # A folder given as the labels file: refused at the start, not a 500 at every answer.
    with pytest.raises(UserError, match="is a folder"):
        LabelStore(tmp_path)


def test_an_object_id_beyond_64_bits_is_a_user_error(tmp_path: Path) -> None:
    # A hand-edited id past int64 was an OverflowError traceback in `score --review-labels`.
    from plasticc_jax.review.rescore import check_labels

    path = tmp_path / "labels.jsonl"
    path.write_text('{"object_id": 5, "label": "anomaly"}\n{"object_id": 2, "label": "skip"}\n')
    path.write_text(path.read_text() + f'{{"object_id": {2**63}, "label": "anomaly"}}\n')
    with pytest.raises(UserError, match=r"line 3: not a review answer \(object_id 9223372036"):
        check_labels(path)
    assert read_answers(tmp_path / "none.jsonl") == []
    path.write_text(f'{{"object_id": {2**63 - 1}, "label": "anomaly"}}\n')
    assert check_labels(path)[0].tolist() == [2**63 - 1]


def test_a_whole_last_answer_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"object_id": 1, "label": "anomaly"}\n{"object_id": 2, "label": "skip"}')
    store = LabelStore(path)  # a hand-edited file: its last answer is kept, its line ended
    store.append(Answer.now(3, labels.ANOMALY))
    assert [a.object_id for a in read_answers(path)] == [1, 2, 3]


@pytest.mark.parametrize(
    "text", ["my notes on these candidates", '{"run": "default-rare", "answers": 3}']
)
def test_a_file_that_is_not_a_labels_file_is_refused_and_left_alone(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(text)  # one line, no newline: not a torn answer, not to be cut off
    with pytest.raises(UserError, match="line 1: not a review answer"):
        LabelStore(path)
    assert path.read_text() == text


def test_a_failed_write_is_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk in the middle of an answer: the answer fails and leaves nothing behind, so
    the next one starts on a line of its own."""
    import errno
    import os

    path = tmp_path / "labels.jsonl"
    store = LabelStore(path)
    store.append(Answer.now(1, labels.ANOMALY))
    write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            return write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        store.append(Answer.now(2, labels.ANOMALY))
    monkeypatch.setattr(os, "write", write)
    store.append(Answer.now(3, labels.SKIP))
    assert [a.object_id for a in read_answers(path)] == [1, 3]
    assert [a.object_id for a in store.answers] == [1, 3]


def test_a_labels_file_no_answer_could_be_written_to_is_refused_at_the_start(
    tmp_path: Path,
) -> None:
    import os

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="cannot write to it"):
        LabelStore(tmp_path / "a_file" / "labels.jsonl")
    os.mkfifo(tmp_path / "fifo")  # opening it for writing would block the server
    with pytest.raises(UserError, match="not a regular file"):
        LabelStore(tmp_path / "fifo")


def test_every_acknowledged_answer_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    code = (
        "import sys\n"
        "from plasticc_jax.review.labels import Answer, LabelStore\n"
        f"store = LabelStore({str(path)!r})\n"
        "for i in range(1_000_000):\n"
        "    store.append(Answer.now(i, 'anomaly'))\n"
        "    print(i, flush=True)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(20)]
    writer.kill()  # SIGKILL: no clean-up of any kind
    writer.wait()
    kept = [a.object_id for a in read_answers(path)]
    assert kept[: len(acknowledged)] == acknowledged


def test_csv_export_keeps_the_last_answer_per_object() -> None:
    answers = [
        Answer(5, "anomaly", "t1", 1),
        Answer(6, "skip", "t2", 2),
        Answer(5, "not_interesting", "t3", None),
    ]
    text = labels.answers_csv(answers)
    assert text.splitlines() == [
        "object_id,label,time,position",
        "6,skip,t2,2",
        "5,not_interesting,t3,",
    ]


def test_the_csv_export_ranks_new_files_and_is_no_sessions_labels_file(tmp_path: Path) -> None:
    # `score --review-labels export.csv` (the page's only export) was refused at its header,
    # 'line 1: not a review answer ... fix or remove that line', and so was every line after it.
    from plasticc_jax.review.rescore import check_labels

    answers = [
        Answer(5, "anomaly", "t1", 1),
        Answer(6, "not_interesting", "t2", 2),
        Answer(7, "skip", "t3", 3),
        Answer(5, "not_interesting", "t4", None),
    ]
    jsonl = tmp_path / "labels.jsonl"
    store = LabelStore(jsonl)
    for answer in answers:
        store.append(answer)
    exported = tmp_path / "labels.csv"
    exported.write_text(labels.answers_csv(answers))
    assert read_answers(exported) == list(labels.latest(answers).values())
    for got, expected in zip(check_labels(exported), check_labels(jsonl), strict=True):
        np.testing.assert_array_equal(got, expected)  # the same answers, in the same order
    exported.write_bytes(b"\xef\xbb\xbfobject_id,label\r\n8,anomaly\r\n")  # a spreadsheet's
    assert read_answers(exported) == [Answer(8, "anomaly", "", None)]
    exported.write_text("object_id,label,time,position\n5,anomaly,t1,1\n6,weird,t2,\n")
    with pytest.raises(UserError, match=r"labels\.csv, line 3: not a review answer \(label 'weird"):
        read_answers(exported)
    # A session appends JSON lines: on a CSV it would leave a file that is neither.
    with pytest.raises(UserError, match="is a CSV export of answers"):
        LabelStore(exported)
    assert exported.read_text().startswith("object_id,label,time,position\n")
    # Found by a review: the export saved again by a spreadsheet or R (names quoted, spaces
    # after the commas, a blank last line) was read as JSON lines, refused at its header.
    exported.write_text('"object_id", "label","time"\n"5", "anomaly",t1\n , , \n')
    assert read_answers(exported) == [Answer(5, "anomaly", "t1", None)]
    # Found by a later audit: saved with `;` (a spreadsheet in a comma-decimal locale) or tabs,
    # or by pandas (its index first, `position` 1.0 beside an empty one): refused at line 1.
    expected = [Answer(5, "anomaly", "t1", 1), Answer(6, "skip", "t2", None)]
    for saved in (
        "object_id;label;time;position\n5;anomaly;t1;1\n6;skip;t2;\n",
        "object_id\tlabel\ttime\tposition\n5\tanomaly\tt1\t1\n6\tskip\tt2\t\n",
        ",object_id,label,time,position\n0,5,anomaly,t1,1.0\n1,6,skip,t2,\n",
        "label,object_id,time,position\nanomaly,5,t1,1\nskip,6,t2,\n",
    ):
        exported.write_text(saved)
        assert read_answers(exported) == expected, saved
    exported.write_text("object_id,label,time,position\n5,anomaly,t1,1.5\n")
    with pytest.raises(UserError, match=r"line 2: not a review answer \(position '1.5' is not"):
        read_answers(exported)


# --- the active model ----------------------------------------------------------------------


def test_feature_columns_take_latents_scores_and_context_once() -> None:
    n = 50
    rng = np.random.default_rng(0)
    fused = rng.normal(size=n)
    table = pd.DataFrame(
        {
            "object_id": np.arange(n),
            "mu_10": rng.normal(size=n),
            "mu_2": rng.normal(size=n),
            "class_name": ["x"] * n,
            "fused_score": fused,
            "anomaly_score": fused,  # the same column under a second name: kept once
            "kl": rng.normal(size=n),
            "lc_forest_score": rng.normal(size=n),  # a baseline: never a feature
            "hostgal_photoz": rng.random(n),
        }
    )
    every_group = active.Policy(latents=True, scores=True, context=True)
    assert active.feature_columns(table, policy=every_group) == [
        "mu_2",
        "mu_10",
        "anomaly_score",
        "kl",
        "hostgal_photoz",
    ]
    # The shipped policy (the validation's best) reads every group; one without the context.
    assert active.feature_columns(table) == active.feature_columns(table, policy=every_group)
    no_context = active.Policy(context=False)
    assert active.feature_columns(table, policy=no_context) == [
        "mu_2",
        "mu_10",
        "anomaly_score",
        "kl",
    ]
    table.loc[3, "kl"] = np.inf
    table.loc[4, "kl"] = np.nan
    x = active.feature_matrix(table, ["kl"])
    assert np.isfinite(x).all() and x[3, 0] == np.nanmax(table["kl"].replace(np.inf, np.nan))


def test_answers_pull_similar_objects_up() -> None:
    rng = np.random.default_rng(0)
    # Two rare groups far from a big normal cloud: the expert calls group b anomalous.
    cloud = rng.normal(size=(400, 3))
    group_a = rng.normal(size=(10, 3), scale=0.2) + np.array([6.0, 0.0, 0.0])
    group_b = rng.normal(size=(10, 3), scale=0.2) + np.array([0.0, 6.0, 0.0])
    features = np.vstack([cloud, group_a, group_b])
    ranker = active.ActiveRanker(features)
    a, b = np.arange(400, 410), np.arange(410, 420)
    known = np.concatenate([a[:3], b[:1]])
    scores = ranker.scores(features[known], np.isin(known, b))
    assert scores[b[1:]].min() > scores[a[3:]].max()
    # A pure function of the answers: the same answers give the same scores.
    np.testing.assert_array_equal(scores, ranker.scores(features[known], np.isin(known, b)))


def test_a_policy_picks_its_feature_groups() -> None:
    table = pd.DataFrame(
        {"mu_0": [0.0, 1.0], "anomaly_score": [1.0, 2.0], "hostgal_photoz": [0.0, 0.3]}
    )
    assert active.feature_columns(table, policy=active.Policy(latents=False)) == [
        "anomaly_score",
        "hostgal_photoz",
    ]
    only = active.Policy(scores=False, context=False)
    assert active.feature_columns(table, policy=only) == ["mu_0"]
    with pytest.raises(ValueError, match="feature group"):
        active.Policy(latents=False, scores=False, context=False)
    with pytest.raises(ValueError, match=r"model 'svm': choose from "):
        active.Policy(model="svm")


@pytest.mark.parametrize("model", active.MODELS)
def test_every_model_learns_from_answers_and_is_a_pure_function(model: str) -> None:
    rng = np.random.default_rng(1)
    features = np.vstack([rng.normal(size=(300, 2)), rng.normal(size=(8, 2), scale=0.1) + 5])
    ranker = active.ActiveRanker(features, policy=active.Policy(model=model))
    known = np.array([300, 0, 1, 2])
    scores = ranker.scores(features[known], known >= 300)
    assert np.argsort(-scores)[:5].min() >= 300  # the answered group's others come first
    restarted = active.ActiveRanker(features, policy=active.Policy(model=model))
    np.testing.assert_array_equal(scores, restarted.scores(features[known], known >= 300))


def test_objects_the_forest_ties_are_shown_by_the_static_score() -> None:
    # After a single "not interesting" answer the forest gives most of a pool one score (on the
    # default run's test split, 1,188 of 1,938 objects): the detector's ranking decides among
    # them, not the pool's row order (the page showed the lowest object id next, the simulated
    # expert the first known object of its pool).
    rng = np.random.default_rng(3)
    features, static = rng.normal(size=(200, 1)), rng.normal(size=200)
    ranker = active.ActiveRanker(features, static)
    first = int(ranker.order(ranker.scores())[0])
    answered = np.arange(200) == first
    scores = ranker.scores(features[[first]], np.array([False]))
    tied = np.flatnonzero((scores == scores[~answered].max()) & ~answered)
    assert tied.size > 100
    order = ranker.order(scores, answered)
    np.testing.assert_array_equal(order[: tied.size], tied[np.argsort(-static[tied])])
    assert order[-1] == first
    # The simulated expert's second candidate is the same object.
    is_anomaly = np.arange(200) == order[0]
    curve = simulate.active_curve(features, static, is_anomaly, 2, [])
    np.testing.assert_array_equal(curve, [int(is_anomaly[first]), 1])


def test_the_page_draws_the_bands_as_the_figures_do() -> None:
    from plasticc_jax import figures

    script = (Path(active.__file__).parent / "static" / "app.js").read_text()
    colours = re.search(r"const BAND_COLOURS = \[([^\]]*)\]", script)
    assert colours and tuple(re.findall(r'"(#[0-9a-f]{6})"', colours.group(1))) == (
        figures.BAND_COLOURS
    )
    assert len(figures.BAND_MARKERS) == len(set(figures.BAND_MARKERS)) == 6


def test_a_blending_policy_starts_from_the_static_ranking() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 3))
    static = -np.abs(features[:, 0])  # a static score the forest disagrees with
    ranker = active.ActiveRanker(features, static, active.Policy(blend=True))
    blended = ranker.scores()
    plain = active.ActiveRanker(features).scores()
    expected = 0.5 * (active.rank_fraction(plain) + active.rank_fraction(static))
    np.testing.assert_allclose(blended, expected)
    assert blended.min() >= 0.0 and blended.max() <= 1.0
    with pytest.raises(ValueError, match="static score"):
        active.ActiveRanker(features, policy=active.Policy(blend=True))


@pytest.mark.slow
def test_validation_simulation_compares_policies_on_known_classes(tmp_path: Path) -> None:
    from plasticc_jax.review import validation

    rng = np.random.default_rng(3)
    rows = []
    for fold in (1, 2):
        n_neg, n_pos = 300, 40
        positive = np.r_[np.zeros(n_neg, bool), np.ones(n_pos, bool)]
        mu = rng.normal(size=(n_neg + n_pos, 2)) + 4.0 * positive[:, None]
        rows.append(
            pd.DataFrame(
                {
                    "fold": fold,
                    "object_id": np.arange(n_neg + n_pos) + 1000 * fold,
                    "positive": positive,
                    # the static score finds half of the positives; the latents all of them
                    "anomaly_score": rng.normal(size=n_neg + n_pos)
                    + 5.0 * (positive & (np.arange(n_neg + n_pos) % 2 == 0)),
                    "mu_0": mu[:, 0],
                    "mu_1": mu[:, 1],
                }
            )
        )
    run = tmp_path / "run"
    (run / "validation").mkdir(parents=True)
    pd.concat(rows).to_parquet(run / "validation" / validation.POOL_FILE)
    candidates = {
        "latents": active.Policy(scores=False, context=False),
        "scores": active.Policy(latents=False, context=False),
    }
    summary = validation.simulate_validation(run, candidates, n_draws=2, n_shown=20)
    policies = summary["policies"]
    assert list(policies) == ["static", "latents", "scores"]
    assert policies["latents"]["features"] == ["mu_0", "mu_1"]
    assert summary["folds"]["1"] == {"negatives": 300, "positives": 16}  # 5% of the pool
    assert summary["best"] == "latents" and policies["latents"]["found"]["20"] > 15
    assert policies["static"]["found"]["20"] < policies["latents"]["found"]["20"]
    saved = json.loads((run / "validation" / f"{validation.REPORT}.json").read_text())
    assert saved["best"] == "latents"
    assert "**(best)**" in (run / "validation" / f"{validation.REPORT}.md").read_text()


# --- the API, over plain HTTP --------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(tiny_run) -> Pool:
    """The shared tiny run's test split as a review pool; without the light curves, whose
    reconstruction needs the VAE (the browser tests show them)."""
    return Pool(tiny_run.run_dir, workdir=tiny_run.workdir, curves=False)


@pytest.fixture
def server(pool: Pool, tmp_path: Path) -> Iterator[ReviewServer]:
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    with ReviewServer(("127.0.0.1", 0), session) as srv:
        srv.start()
        yield srv
        srv.shutdown()


def request(
    srv: ReviewServer,
    path: str,
    body: bytes | None = None,
    token: str | None = "header",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body) of one request; `token`: "header", "query", None or a wrong value."""
    host, port = srv.server_address[:2]
    url = f"http://{host}:{port}{path}"
    all_headers = dict(headers or {})
    if token == "header":
        all_headers["X-Review-Token"] = srv.token
    elif token == "query":
        url += ("&" if "?" in path else "?") + f"token={srv.token}"
    elif token is not None:
        all_headers["X-Review-Token"] = token
    req = urllib.request.Request(url, data=body, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def api(srv: ReviewServer, path: str, payload: Any = None) -> Any:
    body = None if payload is None else json.dumps(payload).encode()
    status, data = request(srv, path, body, headers={"Content-Type": "application/json"})
    assert status == 200, data
    return json.loads(data)


def test_the_neighbours_shown_are_of_the_candidate_s_own_kind(pool: Pool) -> None:
    """As the detector compares an object: a galactic candidate with galactic known objects
    (found by a review: the page showed a galactic object's neighbours, supernovae)."""
    galactic = pool.table["is_galactic"].to_numpy(bool)
    reference = pool.reference["is_galactic"].to_numpy(bool)
    assert galactic.any() and (~galactic).any()
    rows = np.r_[np.flatnonzero(galactic)[:3], np.flatnonzero(~galactic)[:3]]
    idx, dist = pool.neighbours(rows, 5)
    assert idx.shape == dist.shape == (6, 5)
    assert (reference[idx] == galactic[rows][:, None]).all()
    assert (np.diff(dist, axis=1) >= 0).all()
    # The nearest of that kind: the same as a search among that kind's known objects alone.
    mu = pool.reference[pool.latents].to_numpy(np.float64)
    own = pool.table[pool.latents].to_numpy(np.float64)[rows[0]]
    distances = np.linalg.norm(mu[reference] - own, axis=1)
    assert dist[0] == pytest.approx(np.sort(distances)[:5])


def test_requests_without_the_token_are_refused(server: ReviewServer) -> None:
    for path in ("/", "/static/app.js", "/api/state", "/api/labels.csv", "/nothing"):
        assert request(server, path, token=None)[0] == 403
        assert request(server, path, token="wrong")[0] == 403
    body = json.dumps({"object_id": int(server.session.pool.ids[0]), "label": "anomaly"})
    assert request(server, "/api/label", body.encode(), token=None)[0] == 403
    assert server.session.store.answers == []
    status, page = request(server, "/", token="query")
    assert status == 200 and f"token={server.token}".encode() in page
    assert request(server, "/static/style.css", token="query")[0] == 200


def test_only_the_fixed_routes_exist(server: ReviewServer) -> None:
    for path in (
        "/static/../labels.jsonl",
        "/static/%2e%2e/%2e%2e/config.json",
        "/../../etc/passwd",
        "/static/index.html",
        "/scores.parquet",
        "/api/",
    ):
        assert request(server, path)[0] == 404, path
    assert request(server, "/api/state", b"{}")[0] == 405  # POST to a GET route


def test_an_answer_is_saved_and_re_ranks(server: ReviewServer) -> None:
    state = api(server, "/api/state")
    first = state["next"]
    shown = api(server, f"/api/object?id={first}")
    assert shown["position"] == 1 and shown["label"] is None
    assert shown["curve"] is None and len(shown["neighbours"]) == 5
    assert set(shown["scores"]) >= {"anomaly_score"}
    state = api(server, "/api/label", {"object_id": first, "label": "anomaly"})
    assert state["progress"]["reviewed"] == 1 and state["progress"]["found"] == 1
    assert state["next"] != first
    assert [(a.object_id, a.label) for a in read_answers(server.session.store.path)] == [
        (first, "anomaly")
    ]
    rows = api(server, "/api/ranking?limit=1000")["rows"]
    assert len(rows) == len(server.session.pool)
    first_two = api(server, "/api/ranking?limit=2")  # the page says how many it does not show
    assert len(first_two["rows"]) == 2 and first_two["matched"] == len(server.session.pool)
    assert rows[0]["object_id"] == state["next"] and rows[-1]["label"] == "anomaly"
    assert all(r["label"] is None for r in api(server, "/api/ranking?answered=no")["rows"])
    assert [r["object_id"] for r in api(server, "/api/ranking?answered=yes")["rows"]] == [first]
    status, csv = request(server, "/api/labels.csv")
    assert status == 200 and csv.decode().splitlines()[1].startswith(f"{first},anomaly,")


def test_ranking_filters(server: ReviewServer) -> None:
    pool = server.session.pool
    guess = pool.class_guess[0]
    rows = api(server, f"/api/ranking?class={urllib.parse.quote(guess)}&limit=1000")["rows"]
    assert rows and {r["class_guess"] for r in rows} == {guess}
    for flag, expected in (("yes", True), ("no", False)):
        rows = api(server, f"/api/ranking?galactic={flag}&limit=1000")["rows"]
        assert all(r["galactic"] is expected for r in rows)
    low, high = np.quantile(pool.static, [0.25, 0.75])
    rows = api(server, f"/api/ranking?min={low}&max={high}&limit=1000")["rows"]
    assert rows and all(low <= r["anomaly_score"] <= high for r in rows)
    assert request(server, "/api/ranking?min=abc")[0] == 400
    assert request(server, "/api/ranking?galactic=maybe")[0] == 400
    assert request(server, "/api/ranking?answered=1")[0] == 400
    # Integers as their digits alone, as in an answer (an audit found "+1", "1_0", " 1" and other
    # scripts' digits accepted here and refused there).
    first = api(server, "/api/state")["next"]
    # ... and beyond Python's 4,300 digits (a review: a 500 and a traceback).
    for id_text in (f"+{first}", f" {first}", f"{first}_0", "\uff11", "--1", "9" * 5000):
        query = urllib.parse.quote(id_text)
        assert request(server, f"/api/object?id={query}")[0] == 400, id_text
        assert request(server, f"/api/ranking?limit={query}")[0] == 400, id_text
    for limit in ("0", "-1"):  # no rows is no ranking (a review: 200 and nothing)
        assert request(server, f"/api/ranking?limit={limit}")[0] == 400, limit


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"object_id": 1}',
        b'{"object_id": 1, "label": "anomaly", "extra": 1}',
        b'{"object_id": "one", "label": "anomaly"}',
        b'{"object_id": "OBJECT.0", "label": "anomaly"}',  # text: the digits alone
        b'{"object_id": " OBJECT", "label": "anomaly"}',
        b'{"object_id": "--OBJECT", "label": "anomaly"}',
        b'{"object_id": true, "label": "anomaly"}',
        b'{"object_id": 999999999999, "label": "anomaly"}',
        b'{"object_id": OBJECT, "label": "interesting"}',
        b'{"object_id": OBJECT, "label": null}',
        b"\xff\xfe",
        b"{" + b" " * 5000 + b"}",
        b"[" * 2000 + b"]" * 2000,  # nested past Python's recursion limit
        b'{"object_id": 1, "object_id": OBJECT, "label": "nope", "label": "skip"}',  # repeated
        b'{"object_id": OBJECT, "label": "skip", "previous": "maybe"}',
    ],
)
def test_a_malformed_answer_is_400_and_changes_nothing(server: ReviewServer, body: bytes) -> None:
    before = api(server, "/api/state")
    body = body.replace(b"OBJECT", str(before["next"]).encode())
    status, data = request(server, "/api/label", body, headers={"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(data)
    assert api(server, "/api/state") == before
    assert server.session.store.path.read_bytes() == b""  # created at the start, still empty


def test_an_answer_not_sent_as_json_is_415_and_changes_nothing(server: ReviewServer) -> None:
    """The page sends JSON; an HTML form (another site's, say) cannot: its type is refused."""
    before = api(server, "/api/state")
    body = json.dumps({"object_id": before["next"], "label": "anomaly"}).encode()
    for kind in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        status, data = request(server, "/api/label", body, headers={"Content-Type": kind})
        assert status == 415 and "application/json" in json.loads(data)["error"], kind
    assert api(server, "/api/state") == before
    assert server.session.store.path.read_bytes() == b""  # created at the start, still empty


def test_a_content_length_that_is_not_a_number_is_400(server: ReviewServer) -> None:
    """'²' passes str.isdigit() but not int(): it was a 500 with a traceback."""
    before = api(server, "/api/state")
    body = json.dumps({"object_id": before["next"], "label": "anomaly"}).encode()
    headers = {"Content-Length": "\u00b2", "Content-Type": "application/json"}
    assert request(server, "/api/label", body, headers=headers)[0] == 400
    assert api(server, "/api/state") == before


def test_two_content_lengths_are_400(server: ReviewServer) -> None:
    """Which of two lengths frames the body is a guess (found by an audit: the first won)."""
    import http.client

    before = api(server, "/api/state")
    body = json.dumps({"object_id": before["next"], "label": "anomaly"}).encode()
    host, port = server.server_address[:2]
    for lengths in ((len(body), 5), (5, len(body)), (len(body), len(body))):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.putrequest("POST", "/api/label")
        for length in lengths:
            connection.putheader("Content-Length", str(length))
        connection.putheader("Content-Type", "application/json")
        connection.putheader("X-Review-Token", server.token)
        connection.endheaders(body)
        assert connection.getresponse().status == 400, lengths
        connection.close()
    assert api(server, "/api/state") == before


def test_other_methods_are_405_with_the_usual_headers(server: ReviewServer) -> None:
    import http.client

    from plasticc_jax.review.server import SECURITY_HEADERS

    host, port = server.server_address[:2]
    for method in ("HEAD", "PUT", "TRACE"):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request(method, "/api/state", body=b"x" if method == "PUT" else None)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 405, method
        assert all(response.getheader(k) == v for k, v in SECURITY_HEADERS.items()), method
        assert (body == b"") == (method == "HEAD"), method
        connection.close()


def test_errors_of_the_http_layer_carry_the_usual_headers(server: ReviewServer) -> None:
    """An unknown method or an overlong request line is answered by `http.server` itself: as
    JSON, with the security headers, as every other answer."""
    import http.client

    from plasticc_jax.review.server import SECURITY_HEADERS

    host, port = server.server_address[:2]
    for method, path, status in (("PROPFIND", "/api/state", 501), ("GET", "/" + "a" * 70000, 414)):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request(method, path)
        response = connection.getresponse()
        assert response.status == status, method
        assert all(response.getheader(k) == v for k, v in SECURITY_HEADERS.items()), method
        assert "error" in json.loads(response.read()), method
        connection.close()


def test_the_server_listens_on_ipv6_and_warns_off_loopback(pool: Pool, tmp_path: Path) -> None:
    import socket

    from plasticc_jax.cli import _exposed_warning, _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert _loopback("::ffff:127.0.0.1") and not _loopback("::ffff:10.0.0.1")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("example.org")
    # The warning said "this machine's name in place of 127.0.0.1 in the URL" for every such
    # address: the URL of `::` names ::1, and that of one address names that address itself.
    assert "in place of 127.0.0.1 in the URL" in _exposed_warning("0.0.0.0", "0.0.0.0")
    assert "in place of ::1 in the URL" in _exposed_warning("::", "::")
    assert "reach the page (at the URL below)" in _exposed_warning("192.0.2.2", "192.0.2.2")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 on this machine")
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    with ReviewServer(("::1", 0), session) as srv:
        assert srv.url.startswith("http://[::1]:")


def test_every_interface_however_written_is_warned_as_the_url_names_it() -> None:
    """Found by a review: `--host ""` or `--host 0` (every IPv4 interface, as `0.0.0.0`) got
    "reach the page (at the URL below)" while the URL names 127.0.0.1, which no other machine
    reaches: the warning looked at the address as given, the URL at the address bound."""
    import socket

    from plasticc_jax.cli import _exposed_warning

    for host in ("", "0"):
        with socket.socket() as probe:
            probe.bind((host, 0))
            bound = probe.getsockname()[0]
        assert "in place of 127.0.0.1 in the URL" in _exposed_warning(host, bound)
        assert _exposed_warning(host, bound).startswith(f"listening on {host}: ")


def test_every_interface_gives_a_url_a_browser_opens(pool: Pool, tmp_path: Path) -> None:
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    with ReviewServer(("0.0.0.0", 0), session) as srv:
        assert srv.url.startswith("http://127.0.0.1:")


def test_a_busy_port_is_refused_before_the_pool_loads(tiny_run, tmp_path: Path) -> None:
    import socket

    from plasticc_jax.review.server import open_review

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # A run folder that does not exist: the port is checked first.
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            open_review(tmp_path / "no-run", port=port)
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            open_review(tiny_run.run_dir, port=port, workdir=tiny_run.workdir)
    # An address that is not this machine's, with any free port (0): said before the pool
    # loads too (it was after, once the table and the VAE's reconstructions were loaded).
    for host in ("192.0.2.123", "no-such-host.invalid", "\u00e9..x"):  # the last: a TypeError
        with pytest.raises(UserError, match=f"cannot listen on {re.escape(host)}:0: "):
            open_review(tmp_path / "no-run", host=host)


def test_an_answer_the_disk_cannot_take_is_507_and_changes_nothing(
    server: ReviewServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(answer: Answer) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    before = api(server, "/api/state")
    monkeypatch.setattr(server.session.store, "append", full)
    body = json.dumps({"object_id": before["next"], "label": "anomaly"}).encode()
    status, data = request(server, "/api/label", body, headers={"Content-Type": "application/json"})
    assert status == 507 and "not saved: No space left" in json.loads(data)["error"]
    assert api(server, "/api/state") == before


def test_two_tabs_answering_at_once_lose_no_answer(server: ReviewServer) -> None:
    ids = [int(i) for i in server.session.pool.ids[:50]]  # 50: more than the default backlog
    barrier = threading.Barrier(len(ids))
    results: list[int] = []

    def tab(object_id: int) -> None:
        barrier.wait()
        body = json.dumps({"object_id": object_id, "label": "not_interesting"}).encode()
        headers = {"Content-Type": "application/json"}
        results.append(request(server, "/api/label", body, headers=headers)[0])

    threads = [threading.Thread(target=tab, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * len(ids)
    assert sorted(a.object_id for a in read_answers(server.session.store.path)) == sorted(ids)
    assert api(server, "/api/state")["progress"]["reviewed"] == len(ids)


def test_an_answer_over_another_tabs_is_409_and_changes_nothing(server: ReviewServer) -> None:
    """Found by an audit: two tabs show the same candidate; the second answer silently replaced
    the first (the page sends the label it showed, `previous`, and is told instead)."""
    first = api(server, "/api/state")["next"]
    headers = {"Content-Type": "application/json"}
    tab = {"object_id": first, "label": "anomaly", "previous": None}
    assert request(server, "/api/label", json.dumps(tab).encode(), headers=headers)[0] == 200
    other = {"object_id": first, "label": "not_interesting", "previous": None}
    status, data = request(server, "/api/label", json.dumps(other).encode(), headers=headers)
    assert status == 409 and "is answered 'anomaly' now" in json.loads(data)["error"]
    assert [a.label for a in read_answers(server.session.store.path)] == ["anomaly"]
    changed = {"object_id": first, "label": "not_interesting", "previous": "anomaly"}
    assert request(server, "/api/label", json.dumps(changed).encode(), headers=headers)[0] == 200
    answers = read_answers(server.session.store.path)
    assert [(a.label, a.position) for a in answers] == [("anomaly", 1), ("not_interesting", None)]
    # A tab that thinks it was answered, where it was not (an audit: "answered 'None'").
    unanswered = api(server, "/api/state")["next"]
    stale = {"object_id": unanswered, "label": "skip", "previous": "anomaly"}
    status, data = request(server, "/api/label", json.dumps(stale).encode(), headers=headers)
    assert status == 409 and "is not answered now" in json.loads(data)["error"]


def test_a_labels_file_of_which_no_answer_is_in_the_pool_is_warned_of(
    pool: Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Most likely another run's file: it started with "0 answered before" only (an audit)."""
    store = LabelStore(tmp_path / "labels.jsonl")
    store.append(Answer(-12345, "anomaly", "t", 1))
    with caplog.at_level("WARNING"):
        ReviewSession(pool, store)
    assert "none of its 1 answered objects is a candidate of this review" in caplog.text


def test_a_pool_of_one_object_is_reviewed(tiny_run, tmp_path: Path) -> None:
    """Found by an audit: one candidate gave an infinite active score (500 on every page)."""
    one = Pool(tiny_run.run_dir, workdir=tiny_run.workdir, curves=False, top=1)
    session = ReviewSession(one, LabelStore(tmp_path / "labels.jsonl"))
    assert np.isfinite(session.active).all()
    state = session.answer(session.state()["next"], "anomaly")
    assert state["progress"] == {**state["progress"], "reviewed": 1, "found": 1, "remaining": 0}
    assert json.dumps(session.describe(int(one.ids[0])), allow_nan=False)


def test_a_second_session_on_a_link_to_the_labels_is_refused(pool: Pool, tmp_path: Path) -> None:
    """Found by an audit: a hard link in another folder escaped the path's lock."""
    path = tmp_path / "labels.jsonl"
    LabelStore(path).append(Answer.now(1, labels.ANOMALY, 1))
    (tmp_path / "other").mkdir()
    os.link(path, tmp_path / "other" / "labels.jsonl")
    refused = pytest.raises(UserError, match="in use by another review session")
    with labels.held(path), refused, labels.held(tmp_path / "other" / "labels.jsonl"):
        pass
    # Refused before the review is loaded: no labels file for a mistyped run.
    with pytest.raises(UserError, match="does not exist"):
        open_review(tmp_path / "no-such-run")
    assert not (tmp_path / "no-such-run").exists()
    # Nor for a run not evaluated, or a --scores table that is not there (an audit: an empty
    # labels file was made, which `score --review-labels` then called a file of no answer).
    run_dir = tmp_path / "run"
    shutil.copytree(pool.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    given = tmp_path / "missing.parquet"
    with pytest.raises(UserError, match=rf"no score table at {re.escape(str(given))}$"):
        open_review(run_dir, scores=given)
    (run_dir / "scores.parquet").unlink()
    with pytest.raises(UserError, match=r"no score table at .*: run `plasticc-jax evaluate` first"):
        open_review(run_dir)
    assert not (run_dir / "review").exists()


def test_a_table_of_several_nights_is_refused_with_the_way_out(pool: Pool, tmp_path: Path) -> None:
    """A replay's whole candidates dataset lists an object once a night it was re-scored: one
    night's is the table to review."""
    table = pd.read_parquet(pool.run_dir / "scores.parquet")
    nights = pd.concat([table.assign(night=60001), table.assign(night=60002)])
    nights.to_csv(tmp_path / "nights.csv", index=False)
    with pytest.raises(UserError, match=r"twice: .* \(a replay's candidates: one night's"):
        open_review(pool.run_dir, scores=tmp_path / "nights.csv", labels=tmp_path / "l.jsonl")
    assert not (tmp_path / "l.jsonl").exists()  # no empty labels file left behind (a review)


def test_a_new_session_resumes_where_the_last_stopped(pool: Pool, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    first = ReviewSession(pool, LabelStore(path))
    for label in ("anomaly", "not_interesting", "skip", "anomaly"):
        state = first.answer(first.state()["next"], label)
    resumed = ReviewSession(pool, LabelStore(path))
    assert resumed.state()["progress"] == state["progress"]
    assert resumed.state()["next"] == state["next"]
    np.testing.assert_array_equal(resumed.active, first.active)


# --- the simulated expert and `score --review-labels` --------------------------------------


def test_simulated_expert_writes_the_discovery_curve(tiny_run, tmp_path: Path) -> None:
    from plasticc_jax.review.simulate import FIGURE, SUMMARY, simulate

    run_dir = tmp_path / "run"  # the shared run is read only: the reports go to a copy
    shutil.copytree(tiny_run.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    summary = simulate(run_dir, fractions=(0.3,), n_draws=2, n_shown=5)
    assert (run_dir / FIGURE).stat().st_size > 0
    saved = json.loads((run_dir / SUMMARY).with_suffix(".json").read_text())
    assert saved["target"] == summary["target"] and saved["n_draws"] == 2
    (pool,) = saved["pools"]
    assert pool["n_anomalies"] == round(0.3 * pool["n_known"] / 0.7)
    for name in ("active", "static"):
        curve = np.asarray(pool["curves"][f"{name}_mean"])
        assert len(curve) == 5 and (np.diff(curve) >= 0).all() and curve[-1] <= 5
    assert "| 30% |" in (run_dir / SUMMARY).with_suffix(".md").read_text()
    target = saved["target"]
    assert len(target["draws"]["active"]) == 2
    assert target["active_mean"] == np.mean(target["draws"]["active"])
    # A pool smaller than the goal's 50 (a review: an IndexError): judged at its size.
    table = pd.read_parquet(run_dir / "scores.parquet")
    test_known = table.index[(table["split"] == "test") & ~table["is_anomaly"]]
    table.drop(test_known[30:]).to_parquet(run_dir / "scores.parquet", index=False)
    small = simulate(run_dir, fractions=(0.3,), n_draws=2)
    assert small["target"]["shown"] == 30 + round(0.3 * 30 / 0.7)
    # A run that an interrupted evaluate left incomplete is refused, as `score` refuses it.
    from plasticc_jax.provenance import INCOMPLETE

    (run_dir / INCOMPLETE).write_text("")
    with pytest.raises(UserError, match="is incomplete: an INCOMPLETE marker"):
        simulate(run_dir, fractions=(0.3,), n_draws=2, n_shown=5)


def test_the_goal_s_ratio_has_an_interval_over_the_draws() -> None:
    from plasticc_jax.review.simulate import ratio_interval

    rng = np.random.default_rng(0)
    static = rng.poisson(20, 20).astype(float)
    active = static * 1.5 + rng.normal(0, 2, 20)
    low, high = ratio_interval(active, static, seed=0)
    assert low < active.mean() / static.mean() < high and high - low < 0.3
    assert ratio_interval(active, static, seed=0) == [low, high]  # seeded
    # Noisier draws, a wider interval; one draw, or identical draws, none.
    wide = ratio_interval(active + rng.normal(0, 8, 20), static, seed=0)
    assert wide[1] - wide[0] > high - low
    assert ratio_interval(active[:1], static[:1], seed=0) is None
    assert ratio_interval(active[:9], static[:9], seed=0) is None  # too few to say (a review)
    assert ratio_interval(active[:10], static[:10], seed=0) is not None
    assert ratio_interval(np.full(10, 30.0), np.full(10, 20.0), seed=0) is None
    # A static ranking that found nothing in some draws: the ratio is unbounded.
    found = np.r_[np.zeros(8), 1.0, 2.0]
    assert ratio_interval(np.arange(10.0), found, seed=0) is None


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
def test_review_labels_rank_a_new_score_table(tiny_run, tmp_path: Path, suffix: str) -> None:
    from plasticc_jax.review.rescore import rerank_scored

    new = tiny_run.table[tiny_run.table["split"] == "test"].assign(split="new")
    path = tmp_path / f"scored{suffix}"
    if suffix == ".parquet":
        new.to_parquet(path, index=False)
    else:  # as `score` writes it, with pyarrow (`true`, not pandas' `True`)
        with pa.CompressedOutputStream(str(path), "gzip") as sink:
            pa_csv.write_csv(pa.Table.from_pandas(new, preserve_index=False), sink)
    csv_gz = suffix != ".parquet"
    written = gzip.decompress(path.read_bytes()).decode().splitlines() if csv_gz else []
    answers = tmp_path / "labels.jsonl"
    store = LabelStore(answers)
    train = tiny_run.table[tiny_run.table["split"] == "train"]["object_id"]
    store.append(Answer.now(int(new["object_id"].iat[0]), "anomaly"))
    store.append(Answer.now(int(train.iat[0]), "not_interesting"))  # found in the run's table
    store.append(Answer.now(123456789, "anomaly"))  # in neither table: ignored
    rerank_scored(tiny_run.run_dir, path, answers)
    out = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    assert list(out.columns) == [*new.columns, "review_score", "review_rank"]
    assert sorted(out["review_rank"]) == list(range(1, len(new) + 1))
    pd.testing.assert_series_equal(out["object_id"], new["object_id"].reset_index(drop=True))
    if written:  # the columns `score` wrote keep their text (pandas rewrote `true` as `True`)
        reranked = gzip.decompress(path.read_bytes()).decode().splitlines()
        n = len(new.columns)
        assert [row[:n] for row in csv.reader(reranked)] == list(csv.reader(written))
    rerank_scored(tiny_run.run_dir, path, answers)  # again: the columns are replaced
    again = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    pd.testing.assert_frame_equal(again, out)
    empty = tmp_path / "none.jsonl"
    LabelStore(empty).append(Answer.now(1, "skip"))
    with pytest.raises(UserError, match="no 'anomaly' or 'not interesting'"):
        rerank_scored(tiny_run.run_dir, path, empty)


def test_the_page_and_the_new_tables_rank_the_forest_s_ties_by_the_detector(
    tiny_run, pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plasticc_jax.review.rescore import rerank_scored

    # A forest that tells no object apart: the detector's ranking decides, answered ones last.
    no_forest = lambda self, *answers: np.zeros(len(self.features))  # noqa: E731
    monkeypatch.setattr(active.ActiveRanker, "scores", no_forest)
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    by_detector = pool.table["object_id"].to_numpy()[np.argsort(-pool.static, kind="stable")]
    first = session.state()["next"]
    assert first == by_detector[0]
    session.answer(first, "not_interesting")
    assert session.state()["next"] == by_detector[1]
    new = tiny_run.table[tiny_run.table["split"] == "test"].assign(split="new")
    new.to_parquet(path := tmp_path / "scored.parquet", index=False)
    by_score = new["object_id"].to_numpy()[np.argsort(-new["anomaly_score"].to_numpy())]
    answered, skipped = int(by_score[0]), int(by_score[1])
    LabelStore(answers := tmp_path / "new.jsonl").append(Answer.now(answered, "anomaly"))
    LabelStore(answers).append(Answer.now(skipped, "skip"))
    rerank_scored(tiny_run.run_dir, path, answers)
    ranked = pd.read_parquet(path).sort_values("review_rank")
    # Answered, and skipped (shown no more on the page, a review): after the others.
    assert set(ranked["object_id"].iloc[-2:]) == {answered, skipped}
    rest = ranked[~ranked["object_id"].isin([answered, skipped])]["anomaly_score"].to_numpy()
    assert (np.diff(rest) <= 0).all()


# pandas mixed the column's types only past its first internal chunk: 300,000 rows (60,000 did not).
@pytest.mark.parametrize(("name", "n"), [("scored.csv", 300_000), ("SCORED.CSV.GZ", 2_000)])
def test_the_review_columns_leave_a_csv_tables_text_alone(
    tmp_path: Path, name: str, n: int
) -> None:
    # Found by a review: pandas read a large CSV's column of class names that start as numbers
    # (a class of one's own, `123`) as numbers and text, which the writer then refused with a
    # traceback; and a `.CSV.GZ` table was rewritten as plain text.
    from plasticc_jax.review.rescore import _add_columns

    names = np.where(np.arange(n) < n - 10, "123", "SN Ia")
    flagged = np.arange(n) % 7 == 0
    table = pa.table({"object_id": np.arange(n), "class_name": names, "flagged": flagged})
    path = tmp_path / name
    with pa.output_stream(str(path), compression="gzip" if name.endswith("GZ") else None) as sink:
        pa_csv.write_csv(table, sink)
    before = path.read_bytes()
    text = gzip.decompress(before) if name.endswith("GZ") else before
    _add_columns(path, np.linspace(0.0, 1.0, n), np.arange(1, n + 1))
    after = path.read_bytes()
    assert after[:2] == before[:2]  # gzip stays gzip (its magic bytes), plain stays plain
    lines = (gzip.decompress(after) if name.endswith("GZ") else after).decode().splitlines()
    assert lines[0] == '"object_id","class_name","flagged","review_score","review_rank"'
    kept = [line.rsplit(",", 2)[0] for line in lines]
    assert kept == text.decode().splitlines()
    assert lines[-1].endswith(f",1,{n}")


def test_new_objects_are_shown_with_the_light_curves_of_the_files_scored(
    tiny_run, tmp_path, caplog
) -> None:
    """The dataset holds only the run's own objects: a table of new files is shown with their
    curves when the files are given, also under ids that the dataset uses for others."""
    from plasticc_jax import cli, replay_input
    from plasticc_jax.review.pool import CurveFiles

    raw = tiny_run.workdir / "data" / "raw"
    lcs = pd.read_csv(raw / "plasticc_train_lightcurves.csv.gz")
    meta = pd.read_csv(raw / "plasticc_train_metadata.csv.gz")
    ids = np.sort(meta["object_id"].to_numpy())[:40]
    moved = dict(zip(ids, np.roll(ids, 1), strict=True))  # the dataset's ids, other objects
    lcs = lcs[lcs["object_id"].isin(ids)].assign(object_id=lambda f: f["object_id"].map(moved))
    meta = meta[meta["object_id"].isin(ids)].assign(object_id=lambda f: f["object_id"].map(moved))
    # A label that is not a class number: scored without one (a review: then shown without its
    # curve, its metadata rejected where the page grids the files).
    meta = meta.astype({"target": object, "true_target": object})
    meta.loc[meta.index[0], ["target", "true_target"]] = "SNIa"
    files = CurveFiles((tmp_path / "lc.csv",), (tmp_path / "meta.csv",))
    lcs.to_csv(files.lightcurves[0], index=False)
    meta.to_csv(files.metadata[0], index=False)
    out = tmp_path / "new.parquet"
    argv = ["score", "--run", str(tiny_run.run_dir), "--output", str(out)]
    assert cli.main([*argv, "--lightcurves", *map(str, files.lightcurves), "--metadata",
                     *map(str, files.metadata)]) == 0  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="plasticc_jax.review.pool"):
        pool = Pool(tiny_run.run_dir, scores=out, workdir=tiny_run.workdir, files=files)
    assert pool.in_files.all() and not pool.in_dataset.any()
    assert "differ from the light curve" not in caplog.text
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    for object_id in pool.ids[:5]:
        shown = session.describe(int(object_id))
        observed = sum(sum(band["observed"]) for band in shown["curve"]["bands"])
        assert observed == pool.table.set_index("object_id").loc[object_id, "n_observed"]
    # Of a few candidates, only theirs are gridded (the others read past).
    top = Pool(tiny_run.run_dir, scores=out, workdir=tiny_run.workdir, files=files, top=5)
    assert top.in_files.all() and len(top.file_curves.arrays) == 5
    # A replay's night (`candidates/night=N`): its curves as of the night's end (here a table
    # scored so, where the replay's would be).
    night = int(np.floor(lcs["mjd"].median() - 0.5))
    as_of = ["--as-of", repr(replay_input.night_end(night))]
    assert cli.main([*argv[:-1], str(tmp_path / "night.parquet"), "--lightcurves",
                     *map(str, files.lightcurves), "--metadata", *map(str, files.metadata),
                     *as_of]) == 0  # fmt: skip
    night_dir = tmp_path / "candidates" / f"night={night}"
    night_dir.mkdir(parents=True)
    (tmp_path / "night.parquet").rename(night_dir / "part-0.parquet")
    nightly = Pool(tiny_run.run_dir, scores=night_dir, workdir=tiny_run.workdir, files=files)
    assert nightly.in_files.all()
    # Files other than those scored (here: as of a date): said, and no curve shown.
    as_of = CurveFiles(files.lightcurves, files.metadata, float(lcs["mjd"].median()))
    with caplog.at_level(logging.WARNING, logger="plasticc_jax.review.pool"):
        other = Pool(tiny_run.run_dir, scores=out, workdir=tiny_run.workdir, files=as_of)
    assert "differ from the light curve of their id in the light-curve files" in caplog.text
    assert not other.in_files.all()


def test_score_checks_the_review_labels_before_scoring(tiny_run, tmp_path, capsys) -> None:
    from plasticc_jax import cli

    raw = tiny_run.workdir / "data" / "raw"
    out = tmp_path / "out.parquet"
    argv = ["score", "--run", str(tiny_run.run_dir), "--output", str(out)]
    argv += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    argv += ["--metadata", str(raw / "plasticc_train_metadata.csv.gz")]
    assert cli.main([*argv, "--review-labels", str(tmp_path / "none.jsonl")]) == 2
    assert "no labels file at" in capsys.readouterr().err
    assert not out.exists()  # refused before any scoring


def test_score_says_its_table_is_written_when_the_review_ranking_fails(
    tiny_run, tmp_path, capsys
) -> None:
    """Answers about none of the objects: the error said nothing of the table already written
    (an audit); it names it now, without the review's columns."""
    from plasticc_jax import cli

    raw = tiny_run.workdir / "data" / "raw"
    out = tmp_path / "out.parquet"
    labels = tmp_path / "labels.jsonl"
    LabelStore(labels).append(Answer.now(123456789, "anomaly"))  # in neither table
    argv = ["score", "--run", str(tiny_run.run_dir), "--output", str(out)]
    argv += ["--lightcurves", str(raw / "plasticc_train_lightcurves.csv.gz")]
    argv += ["--metadata", str(raw / "plasticc_train_metadata.csv.gz")]
    assert cli.main([*argv, "--review-labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "none of the answered objects" in err
    assert f"the scores are written, without the review's ranking: {out}" in err
    assert "review_rank" not in pd.read_parquet(out).columns


def test_the_detectors_class_guess_and_new_score_columns_are_used(tiny_run, tmp_path) -> None:
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    n = len(table)
    table["latent_knn"] = np.linspace(0.0, 1.0, n)  # a new component of the detector
    table["nearest_class"] = [90, 16] * (n // 2) + [90] * (n % 2)
    table["nearest_class_prob"] = 0.75
    table["is_galactic"] = table["nearest_class"] == 16
    path = tmp_path / "scores.parquet"
    table.to_parquet(path, index=False)
    pool = Pool(tiny_run.run_dir, scores=path, curves=False, top=10)
    assert len(pool) == 10 and "latent_knn" in pool.score_names
    assert "latent_knn" in pool.feature_names  # a score; context only if the policy says so
    assert ("is_galactic" in pool.feature_names) == active.POLICY.context
    top = table.nlargest(10, "anomaly_score")
    assert pool.class_guess == ["SN Ia" if c == 90 else "EB" for c in top["nearest_class"]]
    assert pool.galactic == top["is_galactic"].tolist()
    assert (pool.class_prob == 0.75).all()


def test_a_light_curve_is_shown_only_for_the_object_scored_from_it(tiny_run) -> None:
    """Found by a review: a table of new files whose ids were also the dataset's showed the
    dataset's objects' light curves (and their metadata) as the scored objects'."""
    dataset = tiny_run.workdir / tiny_run.config.data.dataset_dir
    arrays = LightCurveArrays.concatenate(
        [shard for split in SPLITS for shard in iter_split(dataset, split)]
    )
    table = tiny_run.table.set_index("object_id").loc[arrays.object_id].reset_index()
    latents = active.latent_columns(list(table.columns))
    shape = arrays.flux.shape
    names = tuple(read_manifest(dataset)["feature_names"])
    mu = table[latents].to_numpy()
    curves = Curves(arrays, mu, np.zeros(shape), np.zeros(shape), np.zeros(shape[2]), names)
    assert same_objects(table, curves).all()
    # The same rows under their neighbours' ids: new objects that share ids with the dataset.
    moved = table.assign(object_id=np.roll(table["object_id"].to_numpy(), 1))
    assert not same_objects(moved, curves).any()
    # Without the columns that repeat the grid's, by the latent means.
    bare = table[["object_id", "anomaly_score", *latents]]
    assert same_objects(bare, curves).all()
    assert not same_objects(bare.assign(object_id=moved["object_id"]), curves).any()
    # Ids the dataset does not hold.
    assert not same_objects(table.assign(object_id=table["object_id"] + 10**9), curves).any()


def test_the_page_shows_no_light_curve_under_another_objects_id(tiny_run, tmp_path, caplog):
    test = tiny_run.table[tiny_run.table["split"] == "test"]
    moved = test.assign(object_id=np.roll(test["object_id"].to_numpy(), 1), split="new")
    path = tmp_path / "scores.parquet"
    moved.to_parquet(path, index=False)
    with caplog.at_level(logging.WARNING, logger="plasticc_jax.review.pool"):
        pool = Pool(tiny_run.run_dir, scores=path, workdir=tiny_run.workdir)
    assert f"{len(test)} candidates (object " in caplog.text
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    shown = session.describe(int(pool.ids[0]))
    assert shown["curve"] is None and "log10_amplitude" not in shown["context"]
    assert all(n["curve"] is not None for n in shown["neighbours"])  # the dataset's own


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        (
            "object_id",
            lambda n: [f"obj{i}" for i in range(n)],
            "'object_id' must hold whole numbers: 'obj0'",
        ),
        (
            "object_id",
            lambda n: [np.nan] * 3 + list(range(n - 3)),
            "whole numbers: nan in row 1 and 2 more",
        ),
        ("object_id", lambda n: [i + 0.5 for i in range(n)], "whole numbers: 0.5"),
        ("anomaly_score", lambda n: ["0.08x"] * n, "'anomaly_score' must hold numbers: '0.08x'"),
        ("anomaly_score", lambda n: [np.nan] * n, "a number for every object (none missing)"),
        ("mu_0", lambda n: ["abc"] * n, "'mu_0' must hold numbers: 'abc'"),
        # Found by an audit: a traceback in the neighbours, and ids the page rounded.
        ("mu_0", lambda n: [np.inf] + [0.0] * (n - 1), "'mu_0' must hold finite numbers: inf"),
        ("is_galactic", lambda n: ["maybe"] * n, "'is_galactic' must hold true or false"),
    ],
)
def test_a_score_table_of_wrong_types_is_one_line(
    tiny_run, tmp_path: Path, column: str, values: Any, message: str
) -> None:
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    table[column] = values(len(table))
    path = tmp_path / "scores.csv"
    table.to_csv(path, index=False)
    with pytest.raises(UserError, match=re.escape(f"the score table {path}: column")) as error:
        Pool(tiny_run.run_dir, scores=path, curves=False)
    assert message in str(error.value)


def test_ids_beyond_javascripts_whole_numbers_travel_as_text(tiny_run, tmp_path: Path) -> None:
    """LSST's ids are 64-bit: one beyond 2**53 - 1 would reach the page rounded to a
    neighbouring id (found by an audit), so the API sends it as text and takes it back so. Up
    to the largest (a review: those above 2**63 - 512 were refused, checked as floats)."""
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    table["object_id"] = np.iinfo(np.int64).max - 7 * np.arange(len(table))
    path = tmp_path / "scores.parquet"
    table.to_parquet(path, index=False)
    pool = Pool(tiny_run.run_dir, scores=path, curves=False, top=10)
    session = ReviewSession(pool, LabelStore(tmp_path / "labels.jsonl"))
    with ReviewServer(("127.0.0.1", 0), session) as srv:
        srv.start()
        first = api(srv, "/api/state")["next"]
        assert isinstance(first, str) and int(first) in set(table["object_id"])
        assert api(srv, f"/api/object?id={first}")["object_id"] == first
        state = api(srv, "/api/label", {"object_id": first, "label": "anomaly"})
        assert state["progress"]["found"] == 1
        assert [r["object_id"] for r in api(srv, "/api/ranking?answered=yes")["rows"]] == [first]
        assert request(srv, "/api/labels.csv")[1].decode().splitlines()[1].startswith(first)
        srv.shutdown()
    assert [a.object_id for a in read_answers(session.store.path)] == [int(first)]
    assert page_id(2**53 - 1) == 2**53 - 1 and page_id(-(2**53)) == str(-(2**53))


def test_a_score_table_may_be_a_folder_of_parts_with_flags_as_text(tiny_run, tmp_path) -> None:
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    table["is_galactic"] = ["true", "0"] * (len(table) // 2) + ["1"] * (len(table) % 2)
    folder = tmp_path / "scores.parquet"  # as `score --dask` writes it
    folder.mkdir()
    half = len(table) // 2
    table.iloc[:half].to_parquet(folder / "part-0.parquet", index=False)
    table.iloc[half:].to_parquet(folder / "part-1.parquet", index=False)
    pool = Pool(tiny_run.run_dir, scores=folder, curves=False)
    assert len(pool) == len(table)
    expected = dict(zip(table["object_id"], table["is_galactic"].isin(["true", "1"]), strict=True))
    assert pool.galactic == [expected[i] for i in pool.ids]
    with pytest.raises(UserError, match=r"no score table at .*missing\.csv$"):
        Pool(tiny_run.run_dir, scores=tmp_path / "missing.csv", curves=False)


@pytest.mark.parametrize("change", ["more", "fewer"])
def test_a_score_table_of_another_latent_space_is_one_line(
    tiny_run, tmp_path: Path, change: str
) -> None:
    # A table of another run (another latent_dim): more latent means than the run's was a
    # KeyError traceback, fewer gave neighbours and class guesses in part of this run's space.
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    latents = active.latent_columns(list(table.columns))
    if change == "more":
        table[f"mu_{len(latents)}"] = 0.5
    else:
        table = table.drop(columns=latents[-1])
    path = tmp_path / "scores.parquet"
    table.to_parquet(path, index=False)
    with pytest.raises(UserError, match=re.escape(f"the score table {path} has ")) as error:
        Pool(tiny_run.run_dir, scores=path, curves=False)
    assert f"(mu_*) where the run {tiny_run.run_dir} has {len(latents)}:" in str(error.value)


def test_a_score_table_of_another_checkpoint_is_one_line(tiny_run, tmp_path: Path) -> None:
    """A table of another run with latents of the same size passed the check by their count and
    was reviewed with this run's neighbours; score tables now name their checkpoint."""
    from plasticc_jax import provenance

    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    mine = provenance.table_checkpoint(tiny_run.run_dir / "scores.parquet")
    assert mine == metrics["checkpoint"]
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    path = tmp_path / "scores.parquet"
    provenance.write_parquet(table, path, mine)
    assert len(Pool(tiny_run.run_dir, scores=path, curves=False)) == len(table)
    provenance.write_parquet(table, path, {**mine, "sha256": "0" * 64})
    with pytest.raises(UserError, match=re.escape(f"the score table {path} was scored with")):
        Pool(tiny_run.run_dir, scores=path, curves=False)
    # Ranking it with answers mixed its latents with the run's too (`score --review-labels`'s
    # re-ranking, and the API the --dask path points to): refused alike, the table unchanged.
    from plasticc_jax.review.rescore import rerank_scored

    answers = tmp_path / "labels.jsonl"
    LabelStore(answers).append(Answer.now(int(table["object_id"].iat[0]), "anomaly"))
    with pytest.raises(UserError, match=re.escape(f"the score table {path} was scored with")):
        rerank_scored(tiny_run.run_dir, path, answers)
    assert "review_score" not in pd.read_parquet(path).columns


def test_a_second_review_of_the_same_labels_is_refused(tiny_run, tmp_path: Path) -> None:
    from plasticc_jax.review.server import open_review

    labels_path = tmp_path / "labels.jsonl"
    holder = subprocess.Popen(  # another `review` of the same labels, in its own process
        [
            sys.executable,
            "-c",
            "import sys, time; from plasticc_jax.io_utils import folder_lock\n"
            f"with folder_lock({str(labels_path)!r}, 'review'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="in use by review"):
            open_review(tiny_run.run_dir, labels=labels_path, workdir=tiny_run.workdir)
    finally:
        holder.kill()
        holder.wait()
    server = open_review(tiny_run.run_dir, labels=labels_path, workdir=tiny_run.workdir)
    server.server_close()  # the lock goes with the server
    open_review(tiny_run.run_dir, labels=labels_path, workdir=tiny_run.workdir).server_close()


def test_command_line_options(tiny_run, capsys: pytest.CaptureFixture[str]) -> None:
    from plasticc_jax import cli

    args = ["score", "--run", "r", "--lightcurves", "a", "--metadata", "m", "--output", "o"]
    assert cli.make_parser().parse_args([*args, "--review-labels"]).review_labels is True
    given = cli.make_parser().parse_args([*args, "--review-labels", "x.jsonl"]).review_labels
    assert given == Path("x.jsonl")
    assert cli.main(["review", "--run", str(tiny_run.run_dir), "--top", "0"]) == 2
    assert "--top 0" in capsys.readouterr().err
    assert cli.main(["review", "--run", str(tiny_run.run_dir), "--simulate", "--draws", "0"]) == 2
    assert cli.main(["review", "--run", str(tiny_run.run_dir), "--validation"]) == 2
    assert "--validation goes with --simulate" in capsys.readouterr().err
    assert cli.main(["review", "--run", str(tiny_run.run_dir), "--simulate", "--top", "5"]) == 2
    assert "--top: not with --simulate" in capsys.readouterr().err
    # The page's options were ignored by --simulate without a word (the review audit).
    simulate = ["review", "--run", str(tiny_run.run_dir), "--simulate"]
    assert cli.main([*simulate, "--port", "8000", "--no-browser", "--workdir", "."]) == 2
    assert "--port, --no-browser, --workdir: not with --simulate" in capsys.readouterr().err
    assert cli.main(["review", "--run", str(tiny_run.run_dir), "--draws", "3"]) == 2
    assert "--draws goes with --simulate" in capsys.readouterr().err
    # The files a table was scored from: both kinds, existing, --as-of only with them.
    review = ["review", "--run", str(tiny_run.run_dir), "--no-browser"]
    assert cli.main([*review, "--lightcurves", "lc.csv"]) == 2
    assert "--lightcurves and --metadata go together" in capsys.readouterr().err
    assert cli.main([*review, "--as-of", "60000"]) == 2
    assert "--as-of goes with --lightcurves" in capsys.readouterr().err
    assert cli.main([*review, "--lightcurves", "no-such.csv", "--metadata", "m.csv"]) == 2
    assert "no-such.csv" in capsys.readouterr().err
    assert cli.main([*simulate, "--lightcurves", "a", "--metadata", "m"]) == 2
    assert "--lightcurves, --metadata: not with --simulate" in capsys.readouterr().err


def test_validation_pool_is_rebuilt_when_the_fold_scores_change(tmp_path: Path) -> None:
    from plasticc_jax import config_io
    from plasticc_jax.review import validation

    run = tmp_path / "run"
    folder = run / "validation"
    folder.mkdir(parents=True)
    config_io.save_config(tiny_config(), run / "config.json")
    from plasticc_jax.components import COMPONENTS

    scores = {"fold": [1, 1], "object_id": [7, 8], "positive": [True, False], "galactic": False}
    pd.DataFrame({**scores, **dict.fromkeys(COMPONENTS, 0.5)}).to_parquet(folder / "scores.parquet")
    stale = pd.DataFrame({"fold": [1], "object_id": [7], "anomaly_score": [0.5]})
    stale.to_parquet(folder / validation.POOL_FILE)
    # Recorded as made from other fold scores: it is not used, the pool is built again (and that
    # needs the folds' prepared data, absent here).
    (folder / "review_pool.json").write_text('{"scores_sha256": "other", "fusion": []}\n')
    with pytest.raises(UserError, match="no prepared dataset"):
        validation.validation_pool(run, workdir=tmp_path)
    # Found by a review: a damaged record or pool was a raw traceback (JSONDecodeError,
    # ArrowInvalid); now the pool is built again, and a damaged pool without folds is named.
    (folder / "review_pool.json").write_text('{"scores_sha')
    with pytest.raises(UserError, match="no prepared dataset"):
        validation.validation_pool(run, workdir=tmp_path)
    (folder / validation.POOL_FILE).write_bytes(b"not parquet")
    (folder / "scores.parquet").unlink()
    with pytest.raises(UserError, match="cannot read the score table"):
        validation.validation_pool(run, workdir=tmp_path)


def test_validation_pool_uses_the_evaluated_detector_s_fusion(tmp_path: Path) -> None:
    from plasticc_jax import config_io, detector_files
    from plasticc_jax.components import COMPONENTS
    from plasticc_jax.detector import parse_fusion
    from plasticc_jax.io_utils import sha256_file
    from plasticc_jax.review import validation

    run = tmp_path / "run"
    folder = run / "validation"
    folder.mkdir(parents=True)
    config = tiny_config()  # its fusion: the protocol's validated one
    config_io.save_config(config, run / "config.json")
    (run / "models").mkdir()
    evaluated = {"latent_knn": 0.25, "recon_chi2": 0.75}  # `evaluate --set eval.fusion=...`
    params = {"weights": evaluated}
    (run / "models" / detector_files.PARAMS_FILE).write_text(json.dumps(params))
    assert validation.run_fusion(run, config) == evaluated
    scores = {"fold": [1, 1], "object_id": [7, 8], "positive": [True, False], "galactic": False}
    pd.DataFrame({**scores, **dict.fromkeys(COMPONENTS, 0.5)}).to_parquet(folder / "scores.parquet")
    made_from = {"scores_sha256": sha256_file(folder / "scores.parquet"), "fusion": evaluated}
    cached = pd.DataFrame({"fold": [1], "object_id": [7], "anomaly_score": [0.5]})
    cached.to_parquet(folder / validation.POOL_FILE)
    (folder / "review_pool.json").write_text(json.dumps(made_from))
    pd.testing.assert_frame_equal(validation.validation_pool(run, workdir=tmp_path), cached)
    # A pool made with the config's fusion is not the detector's: built again (which needs the
    # folds' prepared data, absent here).
    configured = parse_fusion(config.eval.fusion)
    assert configured != evaluated
    (folder / "review_pool.json").write_text(json.dumps({**made_from, "fusion": configured}))
    with pytest.raises(UserError, match="no prepared dataset"):
        validation.validation_pool(run, workdir=tmp_path)
    # A fusion of a component the validation did not score: named, not a KeyError.
    (folder / "review_pool.json").unlink()
    pd.DataFrame({**scores, "latent_knn": 0.5}).to_parquet(folder / "scores.parquet")
    with pytest.raises(UserError, match="weighs recon_chi2, which the validation did not score"):
        validation.validation_pool(run, workdir=tmp_path)
    (run / "models" / detector_files.PARAMS_FILE).write_text("{}")
    with pytest.raises(UserError, match="cannot read the detector's fusion weights"):
        validation.run_fusion(run, config)


def test_the_light_curves_come_only_from_the_runs_own_dataset(
    tiny_run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(UserError, match=r"workdir .*no-such: no such folder"):
        Pool(tiny_run.run_dir, workdir=tmp_path / "no-such", curves=False)
    # A dataset prepared again since (another fingerprint): warned of, its curves not shown.
    other = tmp_path / tiny_run.config.data.dataset_dir
    shutil.copytree(tiny_run.dataset_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["fingerprint"] = "prepared-again"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        pool = Pool(tiny_run.run_dir, workdir=tmp_path)
    assert pool.curves is None
    assert "is not the dataset" in caplog.text and "shows no light curves" in caplog.text
    assert Pool(tiny_run.run_dir, workdir=tiny_run.workdir).curves is not None


def test_the_browser_is_handed_a_private_file_not_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A browser's command line is public (`ps`): it names a redirect file, readable by its
    owner only and removed when the review stops; the temporary folder where the labels' folder
    cannot be written. The browser is started from a thread: the server answers while it opens."""
    given: list[str] = []
    opened = threading.Event()

    def browser(uri: str) -> bool:
        given.append(uri)
        opened.set()
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    url = "http://127.0.0.1:8123/?token=s3cret"
    with browser_opened(url, tmp_path) as redirect:
        assert opened.wait(10) and redirect.parent == tmp_path
        assert given == [redirect.as_uri()] and "s3cret" not in given[0]
        assert stat.S_IMODE(redirect.stat().st_mode) == 0o600
        assert f'content="0;url={url}"' in redirect.read_text()
    assert not redirect.exists() and list(tmp_path.iterdir()) == []

    opened.clear()
    with browser_opened(url, tmp_path / "missing") as redirect:
        assert opened.wait(10) and redirect.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(redirect.stat().st_mode) == 0o600
    assert not redirect.exists()

    # A browser that blocks until closed (lynx in the terminal) holds nothing up: the review
    # goes on while it is open.
    closed, returned = threading.Event(), threading.Event()

    def terminal_browser(uri: str) -> bool:
        closed.wait(60)
        returned.set()
        return True

    monkeypatch.setattr(webbrowser, "open", terminal_browser)
    with browser_opened(url, tmp_path) as redirect:
        assert redirect.exists() and not returned.is_set()
    closed.set()
    assert list(tmp_path.iterdir()) == []

    # A browser that fails to start: one line, no traceback.
    def broken_browser(uri: str) -> bool:
        raise OSError("no such file: firefox")

    monkeypatch.setattr(webbrowser, "open", broken_browser)
    said = "no browser could be started"
    with caplog.at_level(logging.INFO, "plasticc_jax.review.server"), browser_opened(url, tmp_path):
        deadline = time.monotonic() + 10
        while said not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert said in caplog.text  # the error caught (a traceback otherwise, and no line)


def test_review_while_evaluate_rewrites_the_run_names_it(tiny_run, tmp_path: Path) -> None:
    """Found by an audit: review during an evaluate said "incomplete: run `plasticc-jax evaluate`
    for this run again" (its marker), and that evaluate was then refused as in use."""
    from plasticc_jax.io_utils import FolderBusy
    from plasticc_jax.provenance import INCOMPLETE

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    (run_dir / INCOMPLETE).write_text("evaluate started at ... and has not finished\n")
    child = hold_lock(run_dir, "evaluate", "exclusive")
    try:
        with pytest.raises(FolderBusy, match=r"in use by evaluate \(writing; pid"):
            Pool(run_dir, workdir=tiny_run.workdir, curves=False)
    finally:
        child.kill()
        child.wait()
    with pytest.raises(UserError, match="is incomplete: evaluate started"):
        Pool(run_dir, workdir=tiny_run.workdir, curves=False)  # none running: the marker


@pytest.mark.parametrize("folder", ["", "validation"])
def test_the_simulated_expert_while_evaluate_or_validate_writes_names_it(
    tiny_run, tmp_path: Path, folder: str
) -> None:
    """Found by an audit: `review --simulate` during an evaluate said "incomplete: run
    `plasticc-jax evaluate` for this run again" (its marker), as review did before it read the
    run under its lock; `--simulate --validation` read the folds a validate was rewriting."""
    from plasticc_jax.io_utils import FolderBusy
    from plasticc_jax.provenance import INCOMPLETE
    from plasticc_jax.review.simulate import simulate
    from plasticc_jax.review.validation import simulate_validation

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    if not folder:
        (run_dir / INCOMPLETE).write_text("evaluate started at ... and has not finished\n")
    (run_dir / folder).mkdir(exist_ok=True)
    stage = "validate" if folder else "evaluate"
    child = hold_lock(run_dir / folder, stage, "exclusive")
    try:
        with pytest.raises(FolderBusy, match=rf"in use by {stage} \(writing; pid"):
            if folder:
                simulate_validation(run_dir, n_draws=1)
            else:
                simulate(run_dir, fractions=(0.3,), n_draws=1, n_shown=5)
    finally:
        child.kill()
        child.wait()
    if folder:
        with pytest.raises(UserError, match="holds no fold scores"):
            simulate_validation(run_dir, n_draws=1)
    else:
        with pytest.raises(UserError, match="is incomplete: evaluate started"):
            simulate(run_dir, fractions=(0.3,), n_draws=1, n_shown=5)
        (run_dir / "scores.parquet").unlink()
        (run_dir / INCOMPLETE).unlink()
        with pytest.raises(UserError, match=r"scores\.parquet: run `plasticc-jax evaluate` first"):
            simulate(run_dir, fractions=(0.3,), n_draws=1, n_shown=5)


def test_review_labels_while_evaluate_rewrites_the_run_names_it(tiny_run, tmp_path: Path) -> None:
    """Found by an audit: `score --review-labels` read the run's scores.parquet for the answered
    objects without the run's lock, so during an evaluate (or after an interrupted one) it mixed
    the new table with the run's table of another model, or one half rewritten."""
    from plasticc_jax.io_utils import FolderBusy
    from plasticc_jax.provenance import INCOMPLETE
    from plasticc_jax.review.rescore import rerank_scored

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    table = tiny_run.table[tiny_run.table["split"] == "test"].assign(split="new")
    path = tmp_path / "scored.parquet"
    table.to_parquet(path, index=False)
    answers = tmp_path / "labels.jsonl"
    LabelStore(answers).append(Answer.now(int(table["object_id"].iat[0]), "anomaly"))
    child = hold_lock(run_dir, "evaluate", "exclusive")
    try:
        with pytest.raises(FolderBusy, match=r"in use by evaluate \(writing; pid"):
            rerank_scored(run_dir, path, answers)
    finally:
        child.kill()
        child.wait()
    (run_dir / INCOMPLETE).write_text("evaluate started at ... and has not finished\n")
    with pytest.raises(UserError, match="is incomplete: evaluate started"):
        rerank_scored(run_dir, path, answers)
    assert "review_rank" not in pd.read_parquet(path).columns
    (run_dir / INCOMPLETE).unlink()
    rerank_scored(run_dir, path, answers)
    assert sorted(pd.read_parquet(path)["review_rank"]) == list(range(1, len(table) + 1))


def test_ctrl_c_stops_the_server_and_sigterm_is_terminated(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C is how the page is stopped (exit 0); SIGTERM (`docker stop`, a batch system's time
    limit) ends it as every command, 143 (found by an audit: it reported success)."""
    from plasticc_jax import cli, interrupts
    from plasticc_jax.review.server import ReviewServer

    argv = ["review", "--run", str(tiny_run.run_dir), "--no-browser", "--port", "0"]
    argv += ["--labels", str(tmp_path / "labels.jsonl")]
    for stop, code, said in (
        (KeyboardInterrupt, 0, "review stopped; the answers are in"),
        (interrupts.Terminated, 143, "plasticc-jax review: terminated"),
    ):

        def serve(self: ReviewServer, stop: type[BaseException] = stop) -> None:
            raise stop

        monkeypatch.setattr(ReviewServer, "serve_forever", serve)
        assert cli.main(argv) == code
        printed = capsys.readouterr()
        assert said in printed.out + printed.err


def test_percentiles_count_the_objects_with_the_score_and_a_blank_class_is_unknown(
    tiny_run, tmp_path: Path
) -> None:
    """Found by a review: an object without a score was counted below every other (the largest
    score at 87.5%, the missing one at 0%), a blank class name could not be chosen as a filter,
    and pandas' missing value read "<NA>"."""
    from plasticc_jax.review.pool import _plain

    table = tiny_run.table[tiny_run.table["split"] == "test"].reset_index(drop=True)
    path = tmp_path / "scores.parquet"
    table.to_parquet(path, index=False)
    name = next(
        n for n in Pool(tiny_run.run_dir, path, curves=False).score_names if n != "anomaly_score"
    )
    missing, largest = (
        table["object_id"].iloc[0],
        table["object_id"].iloc[table[name].iloc[1:].argmax() + 1],
    )
    table.loc[0, name] = np.nan
    table["nearest_class"] = table["nearest_class_name"].where(table.index != 0, " ")
    table.to_parquet(path, index=False)
    pool = Pool(tiny_run.run_dir, path, curves=False)
    assert pool.scores(pool.row[int(largest)])[name]["percentile"] == 100.0
    assert pool.scores(pool.row[int(missing)])[name] == {"value": None, "percentile": None}
    assert pool.class_guess[pool.row[int(missing)]] == "unknown"
    assert _plain(pd.NA) is None and _plain(np.float64(np.nan)) is None
