"""A review session: the pool, the expert's answers, and the active ranking they produce.

Every answer is written to the labels file (`labels.LabelStore`) and then re-ranks the pool, both
under one lock, so answers from several browser tabs at once are each recorded and each ranking
reflects all answers before it. Reads (the state, an object, the ranking) take the same lock and
see one consistent ranking. A session started on an existing labels file resumes it: its answers
are applied before the first candidate is chosen, and the ranking is a pure function of them
(`active.ActiveRanker`), so the next candidate is the one the stopped session would have shown.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from plasticc_jax.review import active
from plasticc_jax.review.labels import ANOMALY, LABELS, NOT_INTERESTING, SKIP, Answer, LabelStore
from plasticc_jax.review.labels import latest as latest_answers
from plasticc_jax.review.pool import N_NEIGHBOURS, Pool
from plasticc_jax.scoring import places

log = logging.getLogger(__name__)

MAX_RANKING_ROWS = 500
# The largest whole number JavaScript's numbers hold exactly: a larger id would reach the page
# rounded to a neighbouring id (an audit saw one shown and answered so), so it travels as text.
MAX_PAGE_ID = 2**53 - 1


def page_id(object_id: int) -> int | str:
    """An object id as the page's JSON carries it: a number, or beyond `MAX_PAGE_ID` its
    digits as text (LSST's 64-bit ids can be that large)."""
    return object_id if abs(object_id) <= MAX_PAGE_ID else str(object_id)


def answered_id(value: Any) -> int:
    """The object id of an answer: a JSON integer, or its digits as text (`page_id`).

    Raises:
        BadRequest: anything else (a boolean, a float, other text).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.removeprefix("-").isdigit():
        return int(value)
    raise BadRequest("object_id must be an integer, or its digits as text")


class BadRequest(ValueError):
    """A request the session refuses (the server answers 400); nothing was changed."""


class Conflict(ValueError):
    """An answer given against a label that has changed since (another tab answered the same
    object first): refused (the server answers 409); nothing was changed."""


# `previous` not given: the answer replaces whatever is there (API clients, the simulation).
UNCHECKED = object()


@dataclass(frozen=True)
class Filters:
    """The ranking list's filters (None: no filter).

    Attributes:
        class_guess: only objects whose nearest known class is this one.
        galactic: only galactic (True) or extragalactic (False) objects.
        min_score, max_score: the range of the static `anomaly_score`.
        answered: only objects already answered (True) or not yet (False).
        limit: at most this many rows.
    """

    class_guess: str | None = None
    galactic: bool | None = None
    min_score: float | None = None
    max_score: float | None = None
    answered: bool | None = None
    limit: int = 200


class ReviewSession:
    """The state behind the page and its API (thread-safe).

    Args:
        pool: the candidates.
        store: their labels file; answers about objects outside the pool are kept in the file
            and ignored here.
    """

    def __init__(self, pool: Pool, store: LabelStore) -> None:
        self.pool = pool
        self.store = store
        self.ranker = active.ActiveRanker(pool.features, pool.static)
        self._lock = threading.Lock()
        self._answers = {
            i: a for i, a in latest_answers(store.answers).items() if int(i) in pool.row
        }
        self.rerank_seconds: list[float] = []
        self._rerank()
        outside = len(latest_answers(store.answers)) - len(self._answers)
        if outside and not self._answers:  # another table reviewed, or another run's file
            log.warning(
                "%s: none of its %d answered objects is a candidate of this review (answers "
                "given in a review of another score table, or another run's labels?): they "
                "are kept, and ignored here",
                store.path,
                outside,
            )
        log.info(
            "review of %d candidates, %d answered before; active features: %s",
            len(pool),
            len(self._answers),
            ", ".join(pool.feature_names),
        )

    def _rerank(self) -> None:
        """Refit the active model on the answers so far (holding the lock)."""
        start = time.perf_counter()
        ids, is_anomaly = active.informative(self._answers)
        rows = np.array([self.pool.row[int(i)] for i in ids], np.int64)
        scores = self.ranker.scores(self.pool.features[rows], is_anomaly)
        # Position in the ranking: unanswered objects first by active score, then the answered.
        answered = np.zeros(len(self.pool), bool)
        answered[[self.pool.row[i] for i in self._answers]] = True
        order = self.ranker.order(scores, answered)
        position = places(order)
        self.active, self.answered, self.order, self.position = scores, answered, order, position
        self.rerank_seconds.append(time.perf_counter() - start)

    def answer(self, object_id: Any, label: Any, previous: Any = UNCHECKED) -> dict[str, Any]:
        """Record an answer and re-rank; returns the new `state`.

        Args:
            previous: the object's label as the answering page last saw it (None: unanswered);
                given, the answer is refused if another answer came in since.

        Raises:
            BadRequest: an unknown object or label (nothing is written).
            Conflict: `previous` is not the object's label now (nothing is written).
        """
        object_id = answered_id(object_id)
        if object_id not in self.pool.row:
            raise BadRequest(f"object {object_id} is not a candidate of this review")
        if label not in LABELS:
            raise BadRequest(f"label must be one of {', '.join(LABELS)}")
        if previous is not UNCHECKED and previous is not None and previous not in LABELS:
            raise BadRequest(f"previous must be null or one of {', '.join(LABELS)}")
        with self._lock:
            now = self._answers.get(object_id)
            if previous is not UNCHECKED and previous != (now.label if now else None):
                then = f"answered '{now.label}'" if now else "not answered"
                raise Conflict(
                    f"object {object_id} is {then} now (another tab?): this answer was not saved"
                )
            # The place it was shown at: that of a first answer (a changed one keeps none).
            position = None if now else int(self.position[self.pool.row[object_id]])
            entry = Answer.now(object_id, label, position)
            self.store.append(entry)
            self._answers.pop(object_id, None)
            self._answers[object_id] = entry
            self._rerank()
            log.debug(
                "%s: %s; re-ranked in %.0f ms", object_id, label, 1e3 * self.rerank_seconds[-1]
            )
            return self._state()

    def state(self) -> dict[str, Any]:
        """Progress, the next candidate, and what the page's filters offer."""
        with self._lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        counts = {label: 0 for label in LABELS}
        for entry in self._answers.values():
            counts[entry.label] += 1
        reviewed = len(self._answers)
        unanswered = np.flatnonzero(~self.answered)
        next_row = self.order[0] if unanswered.size else None
        return {
            "progress": {
                "reviewed": reviewed,
                "remaining": len(self.pool) - reviewed,
                "found": counts[ANOMALY],
                "not_interesting": counts[NOT_INTERESTING],
                "skipped": counts[SKIP],
                "pool": len(self.pool),
            },
            "next": None if next_row is None else page_id(int(self.pool.ids[next_row])),
            "classes": sorted(set(self.pool.class_guess)),
            "score_columns": self.pool.score_names,
            "features": self.pool.feature_names,
            "rerank_ms": round(1e3 * self.rerank_seconds[-1], 1),
        }

    def describe(self, object_id: int) -> dict[str, Any]:
        """Everything the page shows about one candidate.

        Raises:
            BadRequest: not a candidate.
        """
        row = self.pool.row.get(object_id)
        if row is None:
            raise BadRequest(f"object {object_id} is not a candidate of this review")
        pool = self.pool
        curves = pool.curves
        idx, dist = pool.neighbours(np.array([row]), N_NEIGHBOURS)
        neighbours = []
        for i, d in zip(idx[0], dist[0], strict=True):
            ref_id = int(pool.reference["object_id"].iat[i])
            neighbours.append(
                {
                    "object_id": page_id(ref_id),
                    "class_name": str(pool.reference["class_name"].iat[i]),
                    "distance": round(float(d), 3),
                    "curve": curves.curve(ref_id) if curves is not None else None,
                }
            )
        with self._lock:
            entry = self._answers.get(object_id)
            active_score = float(self.active[row])
            position = int(self.position[row])
        return {
            "object_id": page_id(object_id),
            "position": position,
            "active_score": round(active_score, 6),
            "static_rank": int(1 + np.sum(pool.static > pool.static[row])),
            "label": entry.label if entry else None,
            "class_guess": pool.class_guess[row],
            "class_prob": _finite(pool.class_prob[row]),
            "galactic": pool.galactic[row],
            "scores": pool.scores(row),
            "context": pool.context(row),
            "curve": pool.curve(row),
            "neighbours": neighbours,
        }

    def ranking(self, filters: Filters) -> dict[str, Any]:
        """The current ranking, best candidate first, filtered: `rows` (at most `filters.limit`)
        and `matched`, how many objects pass the filters."""
        pool = self.pool
        with self._lock:
            order, active_scores, answered = self.order, self.active, self.answered
            position = self.position
            labels = {pool.row[i]: a.label for i, a in self._answers.items()}
        keep = np.ones(len(pool), bool)
        if filters.answered is not None:
            keep &= answered == filters.answered
        if filters.class_guess is not None:
            keep &= np.array([g == filters.class_guess for g in pool.class_guess])
        if filters.galactic is not None:
            keep &= np.array([g is filters.galactic for g in pool.galactic])
        if filters.min_score is not None:
            keep &= pool.static >= filters.min_score
        if filters.max_score is not None:
            keep &= pool.static <= filters.max_score
        matched = [r for r in order if keep[r]]
        rows = matched[: max(0, min(filters.limit, MAX_RANKING_ROWS))]
        listed = [
            {
                "position": int(position[r]),
                "object_id": page_id(int(pool.ids[r])),
                "active_score": round(float(active_scores[r]), 6),
                "anomaly_score": _finite(pool.static[r]),
                "class_guess": pool.class_guess[r],
                "class_prob": _finite(pool.class_prob[r]),
                "galactic": pool.galactic[r],
                "label": labels.get(r),
            }
            for r in rows
        ]
        return {"rows": listed, "matched": len(matched)}


def _finite(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None
