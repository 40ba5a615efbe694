"""radiolab's log: messages about one scan carry its id; the command line sets the level.

Library code logs to loggers under ``radiolab`` and never configures handlers; the
``radiolab`` command sets one up for the duration of a command (``-v``, ``--log-level``). Messages
about a scan go through `scan_logger`, so each record holds the scan id both in its
text and as ``record.scan_id`` for handlers that want it as a field.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ScanLogger(logging.LoggerAdapter):
    """A logger whose records start with the scan id and carry it as ``scan_id``."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**kwargs.get("extra", {}), "scan_id": self.extra["scan_id"]}
        return f"{self.extra['scan_id']}: {msg}", kwargs


def scan_logger(name: str, scan_id: str) -> ScanLogger:
    """Logger ``name`` (a module's ``__name__``) for messages about scan ``scan_id``."""
    return ScanLogger(logging.getLogger(name), {"scan_id": scan_id})


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(prog: str, level: int | str | None = None) -> None:
    """Send radiolab's log records at ``level`` and above to stderr as ``prog: LEVEL: text``.

    Parameters
    ----------
    prog : str
        Command name that starts each line (``radiolab segment``).
    level : int or str, optional
        A `logging` level or one of `LEVELS`; by default the level set before, else
        WARNING. Calling again replaces the handler, never adds a second one.
    """
    logger = logging.getLogger("radiolab")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level.upper() if isinstance(level, str) else level)
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


@contextlib.contextmanager
def command_logging(prog: str, level: int | str) -> Iterator[None]:
    """`configure_logging` for the duration of one command; the previous set-up after it."""
    logger = logging.getLogger("radiolab")
    handlers, previous = list(logger.handlers), logger.level
    configure_logging(prog, level)
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(previous)


def pop_logging_options(argv: list[str]) -> tuple[list[str], str | None]:
    """Remove ``-v``/``-vv``/``--verbose`` and ``--log-level LEVEL`` from ``argv``.

    They may stand anywhere before a ``--``. Returns the other arguments and the level
    asked for (None: not given). ``--log-level`` wins over ``-v``.

    Raises
    ------
    ValueError
        For a ``--log-level`` without a value or with an unknown one.
    """
    rest: list[str] = []
    verbosity, level = 0, None
    items = iter(argv)
    for item in items:
        if item == "--":
            rest.append(item)
            rest.extend(items)
            break
        if item in ("-v", "--verbose"):
            verbosity += 1
        elif item == "-vv":
            verbosity += 2
        elif item == "--log-level" or item.startswith("--log-level="):
            value = item.partition("=")[2] if "=" in item else next(items, None)
            if value is None or value.upper() not in LEVELS:
                raise ValueError(f"--log-level needs one of {', '.join(LEVELS)}, got {value!r}")
            level = value.upper()
        else:
            rest.append(item)
    if level is None and verbosity:
        level = "INFO" if verbosity == 1 else "DEBUG"
    return rest, level
