"""The review page in a real browser: headless Chromium (Debian's package) driven by Playwright.

One browser, one page and one review server for the whole module (the server is restarted once,
by the test of resuming); no sleeps: every step waits for a condition on the page. Skipped, with
the reason, where Chromium or Playwright is missing (`make test` installs Chromium when it runs as
root on Debian).

`PLASTICC_JAX_REVIEW_SCREENSHOT=path` keeps the screenshot taken after a reload (the README's is
docs/review.png); `PLASTICC_JAX_REVIEW_RUN=runs/default-rare` runs the tests on that run instead
of the tiny synthetic one (answers go to a temporary labels file either way).
"""

from __future__ import annotations

import os
import shutil
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plasticc_jax.review.labels import LabelStore, latest, read_answers
from plasticc_jax.review.pool import Pool
from plasticc_jax.review.server import ReviewServer, browser_opened
from plasticc_jax.review.session import ReviewSession

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Nothing is fetched from anywhere but the review server, and no profile outlives the browser
# (Playwright gives each launch a fresh user-data directory).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    given = os.environ.get("PLASTICC_JAX_CHROMIUM")
    if given:
        return given
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


class Review:
    """A review server on a labels file, that can be stopped and started again."""

    def __init__(self, pool: Pool, labels: Path):
        self.pool, self.labels = pool, labels
        self.server = self._start()

    def _start(self) -> ReviewServer:
        server = ReviewServer(("127.0.0.1", 0), ReviewSession(self.pool, LabelStore(self.labels)))
        server.start()
        return server

    def restart(self) -> None:
        self.stop()
        self.server = self._start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return self.server.url

    def state(self) -> dict[str, Any]:
        return self.server.session.state()

    def with_answers(self, n: int) -> None:
        """At least `n` answers, an "anomaly" among them, given here where the tests before
        (run alone, or in another order) gave fewer."""
        session = self.server.session
        while (
            session.state()["progress"]["reviewed"] < n or not session.state()["progress"]["found"]
        ):
            session.answer(session.state()["next"], "anomaly")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
    )
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "no Chromium to drive: install Debian's `chromium` package (`make test` does, as "
            "root) or set PLASTICC_JAX_CHROMIUM to a Chromium binary"
        )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def review(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    run_dir = os.environ.get("PLASTICC_JAX_REVIEW_RUN")
    pool = Pool(Path(run_dir)) if run_dir else Pool(tiny_run.run_dir, workdir=tiny_run.workdir)
    review = Review(pool, tmp_path_factory.mktemp("review") / "labels.jsonl")
    yield review
    review.stop()


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []  # what the page's scripts reported: none is expected
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    yield page
    context.close()


def open_page(page: Any, review: Review) -> None:
    response = page.goto(review.url)
    assert response is not None and response.status == 200
    page.wait_for_selector('body[data-ready="1"]')


def shown_object(page: Any) -> int:
    return int(page.get_attribute("#candidate-title", "data-object-id"))


def reviewed(page: Any) -> int:
    return int(page.get_attribute("#progress", "data-reviewed"))


def test_the_page_shows_the_next_candidate(page: Any, review: Review) -> None:
    page.errors.clear()
    open_page(page, review)
    state = review.state()
    assert shown_object(page) == state["next"]
    assert reviewed(page) == state["progress"]["reviewed"]
    assert page.locator("#lightcurve svg .obs").count() > 0  # observations
    assert page.locator("#lightcurve svg polyline").count() == 6  # a reconstruction per band
    assert page.locator("#neighbours figure").count() > 0
    assert page.locator("#scores tr").count() >= 2
    assert "nearest known class" in page.inner_text("#candidate-guess")
    assert page.errors == []  # no script error, nothing blocked by the page's security policy


def test_a_click_and_a_key_press_record_answers(page: Any, review: Review) -> None:
    open_page(page, review)
    before = reviewed(page)
    first = shown_object(page)
    page.click("button[data-label=anomaly]")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 1}"]')
    page.wait_for_selector(f'#candidate-title:not([data-object-id="{first}"])')
    second = shown_object(page)
    page.keyboard.press("n")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 2}"]')
    page.wait_for_selector(f'#candidate-title:not([data-object-id="{second}"])')
    third = shown_object(page)
    page.keyboard.press("s")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 3}"]')
    answers = latest(read_answers(review.labels))
    assert (answers[first].label, answers[second].label) == ("anomaly", "not_interesting")
    assert answers[third].label == "skip"
    assert int(page.get_attribute("#progress", "data-found")) >= 1


def test_a_key_held_down_answers_once(page: Any, review: Review) -> None:
    open_page(page, review)
    before, first = reviewed(page), shown_object(page)
    page.keyboard.down("n")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 1}"]')
    page.wait_for_selector(f'#candidate-title:not([data-object-id="{first}"])')
    page.keyboard.down("n")  # the key still down: the browser repeats it
    page.wait_for_timeout(500)
    page.keyboard.up("n")
    assert reviewed(page) == before + 1
    # Enter held on the focused button that answered: it is not clicked again.
    second = shown_object(page)
    page.focus("button[data-label=not_interesting]")
    page.keyboard.down("Enter")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 2}"]')
    page.wait_for_selector(f'#candidate-title:not([data-object-id="{second}"])')
    page.keyboard.down("Enter")
    page.keyboard.down("Enter")
    page.wait_for_timeout(500)
    page.keyboard.up("Enter")
    assert reviewed(page) == before + 2
    assert len(read_answers(review.labels)) == before + 2
    # Other keys repeat as ever: a held arrow key scrolls to the neighbours (a review: every
    # repeated key was stopped).
    repeat = """key => {
        const options = {key, repeat: true, cancelable: true, bubbles: true};
        const event = new KeyboardEvent("keydown", options);
        document.body.dispatchEvent(event);
        return event.defaultPrevented;
    }"""
    assert page.evaluate(repeat, "n") and not page.evaluate(repeat, "ArrowDown")


def test_the_keyboard_alone_answers_and_opens_a_ranked_object(page: Any, review: Review) -> None:
    open_page(page, review)
    before = reviewed(page)
    page.focus("button[data-label=not_interesting]")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#progress[data-reviewed="{before + 1}"]')
    # The focus stays on the button (a disabled button had dropped it to the page).
    assert page.evaluate("document.activeElement.dataset.label") == "not_interesting"
    page.keyboard.press("r")
    page.wait_for_selector("#ranking tbody tr button.open")
    assert page.evaluate("document.activeElement.id") == "ranking-title"
    opener = page.locator("#ranking tbody tr button.open").nth(1)
    object_id = int(opener.inner_text())
    opener.focus()
    # A redraw of the ranking meanwhile (the answer's own, arriving late) keeps the focus there.
    page.evaluate("loadRanking()")
    assert page.evaluate("document.activeElement.textContent") == str(object_id)
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#candidate-title[data-object-id="{object_id}"]')
    # The plot has a name, and its bands are buttons that say whether they are shown.
    assert f"object {object_id}" in page.get_attribute("#lightcurve > svg", "aria-label")
    key = page.locator("#lightcurve .band-key").first
    key.focus()
    page.keyboard.press("Enter")
    assert key.get_attribute("aria-pressed") == "false"
    assert page.locator('#lightcurve > svg g[visibility="hidden"]').count() == 1


def test_a_page_whose_server_went_away_says_what_to_do(page: Any, review: Review) -> None:
    open_page(page, review)
    before = reviewed(page)
    page.route("**/api/label", lambda route: route.abort())  # as a stopped server
    page.click("button[data-label=anomaly]")
    page.wait_for_selector("#message:has-text('cannot reach the review server')")
    page.unroute("**/api/label")
    # A restarted server has a new token: a page of the old one is told to open the new URL.
    refused = {"status": 403, "content_type": "application/json"}
    page.route("**/api/label", lambda route: route.fulfill(**refused, body='{"error": "token"}'))
    page.click("button[data-label=anomaly]")
    page.wait_for_selector("#message:has-text('was it restarted?')")
    assert "open the URL it printed" in page.inner_text("#message")
    page.unroute("**/api/label")
    assert review.state()["progress"]["reviewed"] == before  # nothing was recorded


def test_a_reload_shows_the_same_state(page: Any, review: Review, tmp_path: Path) -> None:
    open_page(page, review)
    before = (shown_object(page), page.inner_text("#progress"))
    page.reload()
    page.wait_for_selector('body[data-ready="1"]')
    assert (shown_object(page), page.inner_text("#progress")) == before
    screenshot = Path(os.environ.get("PLASTICC_JAX_REVIEW_SCREENSHOT") or tmp_path / "review.png")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ranking_lists_filters_and_opens_candidates(page: Any, review: Review) -> None:
    review.with_answers(1)
    open_page(page, review)
    page.click("#tab-ranking")
    page.wait_for_selector("#ranking tbody tr")
    page.select_option("select[name=answered]", "yes")
    page.wait_for_selector('#ranking tbody[data-query="answered=yes"]')
    assert page.locator("#ranking td.anomaly").count() >= 1  # the answers given
    page.select_option("select[name=answered]", "no")
    page.select_option("select[name=galactic]", "no")
    page.wait_for_selector('#ranking tbody[data-query="galactic=no&answered=no"]')
    cells = page.locator("#ranking tbody td:nth-child(6)").all_inner_texts()
    assert cells and set(cells) == {"no"}
    assert page.locator("#ranking td.anomaly").count() == 0
    row = page.locator("#ranking tbody tr").first
    object_id = int(row.get_attribute("data-object-id"))
    row.click()
    page.wait_for_selector(f'#candidate-title[data-object-id="{object_id}"]')
    assert page.is_visible("#review-view") and not page.is_visible("#ranking-view")
    # Any candidate opens by its id, listed or not; an id that is none stays in the ranking.
    last = int(review.pool.table["object_id"].iloc[-1])
    page.click("#tab-ranking")
    page.fill("input[name=object]", "999999999")
    page.press("input[name=object]", "Enter")
    page.wait_for_selector("#message:has-text('999999999')")
    assert page.is_visible("#ranking-view") and not page.is_visible("#review-view")
    page.fill("input[name=object]", str(last))
    page.press("input[name=object]", "Enter")
    page.wait_for_selector(f'#candidate-title[data-object-id="{last}"]')


def test_a_restarted_server_resumes_the_session(page: Any, review: Review) -> None:
    review.with_answers(3)
    state = review.state()
    review.restart()
    open_page(page, review)
    assert reviewed(page) == state["progress"]["reviewed"]
    assert shown_object(page) == state["next"]


def test_an_id_beyond_javascripts_whole_numbers_is_answered_as_itself(
    page: Any, tiny_run, tmp_path: Path
) -> None:
    """LSST's 64-bit ids: the page shows, answers and lists the exact id (it travels as text)."""
    table = tiny_run.table[tiny_run.table["split"] == "test"].copy()
    table["object_id"] = 2**60 + 7 * np.arange(len(table))  # each rounds to 2**60 as a double
    table.to_parquet(tmp_path / "scores.parquet", index=False)
    pool = Pool(tiny_run.run_dir, scores=tmp_path / "scores.parquet", workdir=tiny_run.workdir)
    big = Review(pool, tmp_path / "labels.jsonl")
    try:
        open_page(page, big)
        first = big.state()["next"]
        assert page.get_attribute("#candidate-title", "data-object-id") == first
        page.click("button[data-label=anomaly]")
        page.wait_for_selector('#progress[data-reviewed="1"]')
        assert [a.object_id for a in read_answers(big.labels)] == [int(first)]
        page.click("#tab-ranking")
        page.select_option("select[name=answered]", "yes")
        page.wait_for_selector('#ranking tbody[data-query="answered=yes"]')
        assert page.get_attribute("#ranking tbody tr", "data-object-id") == first
    finally:
        big.stop()


def test_a_request_without_the_token_is_refused(page: Any, review: Review) -> None:
    base = review.url.split("?")[0]
    for url in (base, f"{base}?token=wrong", f"{base}api/state"):
        response = page.goto(url)
        assert response is not None and response.status == 403, url


def test_the_browser_opens_the_page_from_a_file_without_the_token_in_its_address(
    page: Any, review: Review, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webbrowser, "open", lambda url: True)
    with browser_opened(review.url, tmp_path) as redirect:
        page.goto(redirect.as_uri())  # what `review` hands the browser: this file, then the page
        page.wait_for_selector('body[data-ready="1"]')
        assert page.url == review.url
    assert not redirect.exists()
