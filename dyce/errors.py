"""The one exception type of the project."""

from __future__ import annotations

from os import PathLike


class DyceError(Exception):
    """A user-facing error: bad input, bad configuration, a file that cannot be used.

    The message names the file and the field where that makes sense; the CLI prints it as one
    line and exits with status 2.
    """

    def __init__(self, message: str, *, path: str | PathLike | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
