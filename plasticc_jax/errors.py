"""The one exception type that reaches the user as a message, not a traceback, and a helper for
the lists such messages give."""

from __future__ import annotations

from collections.abc import Iterable

# What a run without a trained network needs, in a container or not (`make train` runs it).
TRAIN_FIRST = "train it first (`plasticc-jax train`, or `make train`)"


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, bad option).

    The command line prints `error: <message>` and exits with status 2. Messages name the file,
    the column, the line or the object at fault, and say what to do.
    """


def listing(items: Iterable[object], limit: int = 5) -> str:
    """`a, b, c` or, beyond `limit` items, `a, b, c, d, e and 22,991 more`: a list short enough
    for one line of an error message, saying how much was left out."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit:,} more"
