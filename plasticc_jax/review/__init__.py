"""Active anomaly discovery: an expert reviews candidates in a local web page, and each answer
re-ranks the rest (`plasticc-jax review`).

Modules, one job each:

- `labels`: the answers on disk (append-only JSON lines, fsync'd), CSV export;
- `active`: the active model (coniferest's AADForest) and its features from a score table;
- `pool`: the candidates and what the page shows of them (light curves, neighbours, context);
- `session`: answers + pool + ranking, behind one lock;
- `server`: the local web server (token, fixed routes) and `open_review`; `static/`: the page;
- `simulate`: the simulated expert (evaluation only: the test split's true labels);
- `rescore`: `plasticc-jax score --review-labels`, a new table ranked with saved answers.
"""
