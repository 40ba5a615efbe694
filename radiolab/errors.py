"""Exceptions raised by radiolab.

Every error that concerns a file names it, so that a message in a batch log is enough
to find the culprit.
"""

from __future__ import annotations

import os


class RadiolabError(Exception):
    """Base class of all radiolab errors."""


class InputError(RadiolabError, ValueError):
    """An input file or folder that cannot be used, with the reason.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file or folder.
    problem : str
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StageError(RadiolabError):
    """A stage failed on one scan; carries the scan id and the stage name."""

    def __init__(self, scan_id: str, stage: str, message: str) -> None:
        self.scan_id = scan_id
        self.stage = stage
        self.message = message
        super().__init__(f"{scan_id}: {stage}: {message}")


class NoLungError(RadiolabError, ValueError):
    """No lung island survived the lung-mask rules."""


class ParameterError(RadiolabError, ValueError):
    """A setting or option whose value radiolab cannot use; the message names it and
    says what is allowed."""


class DataError(RadiolabError, ValueError):
    """Data that a method cannot use as a whole (a correlation of fewer than 3 scans, all
    scores equal ...); the message says why."""


class FitError(DataError):
    """The pooled mixture cannot be fitted on the data given (too few distinct HU values)."""


class OptionalDependencyError(RadiolabError, ImportError):
    """An optional dependency (torch, Dask, pyradiomics, Jinja2) is missing.

    Parameters
    ----------
    package : str
        The missing package.
    feature : str
        What needs it, as the user asked for it.
    extra : str
        The extra of radiolab that installs it (``dask``, ``torch``, ``radiomics``, ``report``).
    install : str, optional
        How to install it, when not by the extra alone.
    """

    def __init__(self, package: str, feature: str, *, extra: str = "all", install: str | None = None) -> None:
        self.package = package
        install = install or f"`make install` or `pip install 'radiolab[{extra}]'`"
        super().__init__(f"{feature} needs the optional package '{package}'. Install it with {install}.")
