"""The one exception type that reaches the user as a message, not a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, bad option).

    The command line prints `error: <message>` and exits with status 2. Messages name the file,
    the column, the line or the object at fault, and say what to do.
    """
