"""Atomic file output (write to a temporary sibling, rename when complete) and plain values.

Every artifact the project writes goes through :func:`atomic_path`: a killed, interrupted
(SIGINT) or terminated (SIGTERM, what Slurm sends on ``scancel`` or a time limit) writer leaves
neither a half-written file nor its temporary sibling, and a finished file gets the mode a plain
``open()`` would give it (``0o666`` minus the umask), so group-shared result folders stay
readable to the group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dyce.errors import DyceError

#: Exit status of a process ended by SIGTERM (128 + 15), as a shell reports it.
TERMINATED_STATUS = 128 + signal.SIGTERM


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, its sibling
    """Raised in the main thread on SIGTERM while an atomic write is open (like SIGINT's
    ``KeyboardInterrupt``), so that ``finally`` blocks remove temporary files."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"terminated by signal {signum}")


_guard_lock = threading.Lock()
_guard_depth = 0
_previous_handler: Any = None


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While open (outermost use, main thread only): SIGTERM raises :class:`Terminated`.

    A handler someone else installed is left alone; the default one is restored on exit.
    """
    global _guard_depth, _previous_handler
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _guard_lock:
        if _guard_depth == 0:
            current = signal.getsignal(signal.SIGTERM)
            _previous_handler = current
            if current in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _raise_terminated)
        _guard_depth += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0 and signal.getsignal(signal.SIGTERM) is _raise_terminated:
                signal.signal(signal.SIGTERM, _previous_handler or signal.SIG_DFL)


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    On any exception, Ctrl-C or SIGTERM the temporary file is removed and ``path`` is left
    untouched, so a killed or failing job never leaves a plausible-looking half-written artifact.
    The finished file gets mode ``0o666 & ~umask``. Parent folders are created. ``suffix``
    defaults to the suffix of ``path`` (some writers look at it). An existing folder at ``path``
    or a parent that is a file raise :class:`DyceError` before anything is written.
    """
    target = Path(path)
    if target.is_dir():
        raise DyceError("is a folder; give a file name", path=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DyceError("its parent is not a folder", path=target) from None
    with _sigterm_raises():
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.",
            suffix=(target.suffix if suffix is None else suffix) + ".tmp",
            dir=target.parent,
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def refuse_overwriting_inputs(out: str | os.PathLike, inputs: Any, option: str = "out") -> None:
    """Raise :class:`DyceError` when ``out`` is one of the ``inputs`` files (same file on disk,
    also through another spelling or a link): writing it would destroy the input."""
    target = Path(out)
    if not target.exists():
        return
    for source in inputs:
        if source is None or isinstance(source, (dict, Mapping)):
            continue
        try:
            same = Path(source).exists() and os.path.samefile(target, source)
        except (OSError, TypeError):
            continue
        if same:
            raise DyceError(f"is also an input ({source}); writing it would destroy that input; "
                            "choose another output path", path=out, field=option)


def plain_value(value: Any) -> Any:
    """``value`` with mappings as dicts (string keys), tuples as lists and paths as strings.

    Safe for ``torch.load(weights_only=True)`` and JSON, and equal to itself after a round trip.
    """
    if isinstance(value, Mapping):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` if the block succeeds.

    Like :func:`atomic_path` for artifacts made of several files: on any exception, Ctrl-C or
    SIGTERM the temporary folder is removed and ``path`` is left as it was. An existing ``path``
    is replaced whole. The folder gets mode ``0o777 & ~umask``.
    """
    with _sigterm_raises():
        yield from _atomic_dir(Path(path))


def _atomic_dir(target: Path) -> Iterator[Path]:
    import shutil

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DyceError("its parent is not a folder", path=target) from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
