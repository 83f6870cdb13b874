"""The review page's local web server (standard library `http.server`, one thread per request).

Security, as Jupyter does it: the server binds to 127.0.0.1 by default and every request must
carry the session's random token (`?token=...` or the `X-Review-Token` header), compared in
constant time; anything else gets 403. Only a fixed list of routes exists: the page and its two
static assets, read from the package once at start, and the JSON API; no part of a request's path
ever reaches the file system. Responses forbid caching, framing, content sniffing, referrers (the
token is in the URL) and any script or style from elsewhere.

Routes (all GET but the label):

=====================  =======================================================================
`/`                    the page
`/static/app.js`       its script; `/static/style.css` its style sheet
`/api/state`           progress, the next candidate, the filter choices
`/api/object?id=N`     one candidate: scores, class guess, context, light curve, neighbours
`/api/ranking?...`     the current ranking; filters `class`, `galactic` (yes/no), `min`, `max`
                       (of `anomaly_score`), `answered` (yes/no), `limit`
`/api/labels.csv`      the answers so far (latest per object)
POST `/api/label`      `{"object_id": N, "label": "anomaly" | "not_interesting" | "skip"}`,
                       N as the API gave it (a number; an id beyond 2**53 - 1 as text),
                       optionally `"previous"`: the label the page showed (null: none), and
                       409 if the object was answered since (another tab); 400 and nothing
                       written if malformed; answers with the new state
=====================  =======================================================================
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import math
import secrets
import socket
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from plasticc_jax import runs
from plasticc_jax.errors import UserError
from plasticc_jax.io_utils import folder_lock
from plasticc_jax.review.labels import LABELS_FILE, LabelStore, answers_csv
from plasticc_jax.review.labels import held as labels_held
from plasticc_jax.review.pool import NOT_EVALUATED, CurveFiles, Pool
from plasticc_jax.review.session import UNCHECKED, BadRequest, Conflict, Filters, ReviewSession

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Review-Token"
# Every interface, IPv4 and IPv6 -> the address a browser on this machine reaches it at.
WILDCARD_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
MAX_BODY_BYTES = 4096
ANSWER_KEYS = {"object_id", "label", "previous"}
# The static assets: route -> (file in plasticc_jax/review/static, content type).
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def read_assets(token: str) -> dict[str, bytes]:
    """The static files, read once; the page gets the token to load its assets with."""
    folder = resources.files("plasticc_jax.review") / "static"
    assets = {route: (folder / name).read_bytes() for route, (name, _) in ASSETS.items()}
    assets["/"] = assets["/"].replace(b"__TOKEN__", token.encode())
    return assets


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server of one review session.

    Args:
        address: (host, port); port 0 picks a free one.
        session: the review session the API reads and answers.
        token: the secret every request must carry (None: a new random one).
    """

    daemon_threads = True
    # Two tabs and a script can answer at once: the default backlog (5) refused connections
    # when 50 answers arrived together.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], session: ReviewSession, token: str | None = None
    ) -> None:
        if ":" in address[0]:  # an IPv6 address (::1, ::)
            self.address_family = socket.AF_INET6
        self.session = session
        self.token = token or secrets.token_urlsafe(32)
        self.assets = read_assets(self.token)
        self.held = contextlib.ExitStack()  # what the session holds while it serves (a lock)
        super().__init__(address, ReviewHandler)

    def server_close(self) -> None:
        super().server_close()
        self.held.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or stalled is one log line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.info("review server: %s: %s", client_address[0], error or type(error).__name__)
        else:
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The page's address, with the token (on this machine's loopback address where the
        server listens on every interface: `http://0.0.0.0:...` opens nothing in a browser)."""
        host, port = self.server_address[:2]
        host = WILDCARD_LOOPBACK.get(str(host), host)
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/?token={self.token}"

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests, notebooks); `shutdown()` stops it."""
        thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="review-server", daemon=True
        )
        thread.start()
        return thread


class ReviewHandler(BaseHTTPRequestHandler):
    """One request: check the token, route it, answer JSON, CSV or a static asset."""

    server: ReviewServer
    protocol_version = "HTTP/1.1"
    # Seconds a connection may stay silent (a stalled body, an idle keep-alive) before it is
    # closed: a client cannot hold a thread for ever.
    timeout = 60
    server_version = "plasticc-jax-review"
    sys_version = ""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET or POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_HEAD

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The errors `http.server` finds itself (an unknown method, a request line or headers
        too long or malformed): JSON with the security headers, as every other answer."""
        self.close_connection = True
        self._send_json({"error": message or HTTPStatus(code).phrase}, HTTPStatus(code))

    def log_message(self, format: str, *args: Any) -> None:
        line = (format % args).replace(self.server.token, "<token>")  # logs are shared
        log.debug("%s %s", self.address_string(), line)

    def _handle(self, method: str) -> None:
        has_body = (
            self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        )
        if method != "POST" and has_body:
            self.close_connection = True  # its body is not read: never parse it as a request
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
        if not secrets.compare_digest(given.encode(), self.server.token.encode()):
            self._send_error(HTTPStatus.FORBIDDEN, "missing or wrong token")
            return
        routes: dict[tuple[str, str], Callable[[dict[str, list[str]]], None]] = {
            ("GET", "/api/state"): self._state,
            ("GET", "/api/object"): self._object,
            ("GET", "/api/ranking"): self._ranking,
            ("GET", "/api/labels.csv"): self._labels_csv,
            ("POST", "/api/label"): self._label,
        }
        try:
            if method == "GET" and parts.path in ASSETS:
                self._send(HTTPStatus.OK, self.server.assets[parts.path], ASSETS[parts.path][1])
            elif (method, parts.path) in routes:
                routes[method, parts.path](query)
            elif parts.path in ASSETS or parts.path in {path for _, path in routes}:
                self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
            else:
                self._send_error(HTTPStatus.NOT_FOUND, "no such page")
        except BadRequest as error:
            self._send_error(HTTPStatus.BAD_REQUEST, str(error))
        except Conflict as error:
            self._send_error(HTTPStatus.CONFLICT, str(error))
        except (ConnectionError, TimeoutError):  # the client left or stalled: no answer
            raise  # one log line, the connection closed (`ReviewServer.handle_error`)
        except Exception:
            log.exception("review server: %s %s failed", method, parts.path)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the log)")

    # --- routes ---------------------------------------------------------------------------

    def _state(self, query: dict[str, list[str]]) -> None:
        self._send_json(self.server.session.state())

    def _object(self, query: dict[str, list[str]]) -> None:
        self._send_json(self.server.session.describe(_int(query, "id")))

    def _ranking(self, query: dict[str, list[str]]) -> None:
        filters = Filters(
            class_guess=_text(query, "class"),
            galactic=_yes_no(query, "galactic"),
            min_score=_float(query, "min"),
            max_score=_float(query, "max"),
            answered=_yes_no(query, "answered"),
            limit=_positive(_int(query, "limit", 200), "limit"),
        )
        self._send_json(self.server.session.ranking(filters))

    def _labels_csv(self, query: dict[str, list[str]]) -> None:
        text = answers_csv(self.server.session.store.answers)
        self._send(HTTPStatus.OK, text.encode(), "text/csv; charset=utf-8", attachment="labels.csv")

    def _label(self, query: dict[str, list[str]]) -> None:
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":  # what the page sends; an HTML form cannot
            self.close_connection = True  # the body is not read
            self._send_error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json"
            )
            return
        # Two lengths are a malformed request (RFC 9110): which one frames the body is a guess.
        lengths = self.headers.get_all("Content-Length") or [""]
        length = lengths[0]
        if (
            len(lengths) > 1
            or not (length.isascii() and length.isdigit())
            or not 0 < int(length) <= MAX_BODY_BYTES
        ):
            self.close_connection = True  # the body, if any, is not read
            raise BadRequest(
                f"send a JSON body of 1 to {MAX_BODY_BYTES} bytes, with one Content-Length"
            )
        try:
            body = json.loads(self.rfile.read(int(length)), object_pairs_hook=_unique_keys)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past Python's limit
            raise BadRequest("the body is not JSON, or repeats a key") from None
        if not isinstance(body, dict) or not {"object_id", "label"} <= set(body) <= ANSWER_KEYS:
            raise BadRequest('send {"object_id": <integer>, "label": <label>}')
        try:
            state = self.server.session.answer(
                body["object_id"], body["label"], body.get("previous", UNCHECKED)
            )
        except OSError as error:  # the labels file could not take it (a full disk): undone
            log.error("review server: an answer was not saved: %s", error)
            status = (
                HTTPStatus.INSUFFICIENT_STORAGE
                if error.errno == errno.ENOSPC
                else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send_error(status, f"the answer was not saved: {error.strerror or error}")
            return
        self._send_json(state)

    # --- responses ------------------------------------------------------------------------

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, attachment: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if attachment:
            self.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of the GET, no body
            self.wfile.write(body)

    def _send_json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        # An unread request body would be taken for the next request on this connection.
        if self.command != "GET" and status != HTTPStatus.OK:
            self.close_connection = True
        self._send_json({"error": message}, status)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused (ValueError) if a key repeats: which one counts is a guess."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a repeated key")
    return dict(pairs)


def _text(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values and values[0] != "" else None


def _yes_no(query: dict[str, list[str]], name: str) -> bool | None:
    text = _text(query, name)
    if text not in (None, "yes", "no"):
        raise BadRequest(f"{name} must be yes or no")
    return None if text is None else text == "yes"


def _int(query: dict[str, list[str]], name: str, default: int | None = None) -> int:
    text = _text(query, name)
    if text is None and default is not None:
        return default
    # Its digits alone, as an answer's id (`session.answered_id`): not int()'s "+1", "1_0" or
    # other scripts' digits.
    if text is None or not (text.isascii() and text.removeprefix("-").isdigit()):
        raise BadRequest(f"{name} must be an integer")
    try:
        return int(text)
    except ValueError:  # beyond Python's 4,300 digits (a review: a 500 and a traceback)
        raise BadRequest(f"{name} has too many digits") from None


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise BadRequest(f"{name} must be 1 or more")
    return value


def _float(query: dict[str, list[str]], name: str) -> float | None:
    text = _text(query, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number")
    return value


def open_review(
    run_dir: Path,
    scores: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    labels: Path | None = None,
    workdir: Path | None = None,
    top: int | None = None,
    token: str | None = None,
    files: CurveFiles | None = None,
) -> ReviewServer:
    """Load a review session and bind its server (not yet serving: `serve_forever` or `start`).

    Args:
        run_dir: a trained and evaluated run.
        scores: the score table to review (None: the run's `scores.parquet`).
        host, port: where to listen (port 0: a free one).
        labels: the labels file (None: `<run>/review/labels.jsonl`); answers already in it are
            resumed.
        workdir: the project folder, for the prepared dataset (None: from the run's config).
        top: review only the top objects of the static ranking.
        token: the secret of the URL (None: a new random one).
        files: the light-curve files a table of new objects was scored from (their curves).

    Raises:
        UserError: a missing run or table, or a port that cannot be bound.
    """
    run_dir = Path(run_dir)
    # A busy port, or an address not of this machine (a typo in --host), is said at once, not
    # after the pool and model load (seconds to minutes); port 0 checks the address alone.
    _check_port(host, port)
    labels = Path(labels) if labels else run_dir / LABELS_FILE
    with contextlib.ExitStack() as held:  # released here unless the server takes it
        # One session a labels file, however many tabs: a second `review` of the same labels
        # would answer beside the first unseen (each session knows only its own answers). Taken
        # before the pool loads (seconds), so that a second session is refused at once.
        runs.read_config(run_dir)  # a mistyped run: refused before a labels file is made
        # So are a run not evaluated and a missing table (the pool reads them under the lock).
        for table, missing in (
            (run_dir / "scores.parquet", NOT_EVALUATED),
            (scores, ""),
        ):
            if table is not None and not Path(table).exists():
                raise UserError(f"no score table at {table}{missing}")
        existed = labels.exists()
        try:
            held.enter_context(folder_lock(labels, "review"))
            held.enter_context(labels_held(labels))
            store = LabelStore(labels)
        except OSError as error:
            raise UserError(
                f"cannot use the labels file {labels}: {error.strerror or error}"
            ) from None
        try:
            pool = Pool(run_dir, scores, workdir=workdir, top=top, files=files)
        except UserError:
            if not existed and labels.is_file() and not labels.stat().st_size:
                labels.unlink()  # a refused table leaves no empty labels file (a review)
            raise
        session = ReviewSession(pool, store)
        try:
            server = ReviewServer((host, port), session, token)
        except OSError as error:
            raise UserError(_listen_error(host, port, error)) from None
        server.held.enter_context(held.pop_all())
    return server


REDIRECT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={url}">
<title>plasticc-jax review</title></head>
<body><p><a href="{url}">Open the review page</a></p></body></html>
"""


@contextlib.contextmanager
def browser_opened(url: str, folder: Path) -> Iterator[Path]:
    """Open `url` in the user's browser through a redirect file, as Jupyter does.

    A browser is started with its address on the command line, which `ps` shows every user of
    the machine: the command line names the file, readable by its owner only, and the file holds
    the token. The file is written in `folder` (the labels' folder, on the user's disk: a
    sandboxed browser may not see the system's temporary folder), else in the temporary folder,
    and removed when the review stops. The browser is started from a thread, so that the server
    answers it at once (a browser in the terminal, such as lynx, returns only when closed).
    Yields the file.
    """
    page = REDIRECT_PAGE.format(url=html.escape(url, quote=True)).encode()
    try:
        handle, name = tempfile.mkstemp(suffix=".html", prefix=".review-open-", dir=folder)
    except OSError:
        handle, name = tempfile.mkstemp(suffix=".html", prefix="plasticc-jax-review-")
    path, stopped = Path(name), threading.Event()
    try:
        with open(handle, "wb") as file:  # mkstemp: mode 0600
            file.write(page)
        threading.Thread(target=_open_browser, args=(path.as_uri(), stopped), daemon=True).start()
        yield path
    finally:
        stopped.set()
        path.unlink(missing_ok=True)


def _open_browser(uri: str, stopped: threading.Event) -> None:
    try:
        opened = webbrowser.open(uri)
    except Exception as error:  # webbrowser.Error, OSError from Popen: the line below says it
        opened = False
        log.debug("browser: %s", error)
    if not opened and not stopped.is_set():  # not a terminal browser ended with the review
        log.info("no browser could be started: open the URL above")


def _check_port(host: str, port: int) -> None:
    """Raise UserError unless (host, port) can be bound now, as the server binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # a kernel without IPv6 refuses the socket itself; a host of odd characters, its name
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as `HTTPServer` does
            probe.bind((host, port))
    except OSError as error:
        raise UserError(_listen_error(host, port, error)) from None
    except (TypeError, UnicodeError):  # "encoding of hostname failed"
        raise UserError(f"cannot listen on {host}:{port}: not a host name or address") from None


def _listen_error(host: str, port: int, error: OSError) -> str:
    return f"cannot listen on {host}:{port}: {error.strerror or error}"
