"""Pyradiomics access: import on demand, quiet validation, captured log messages, extractors."""

from __future__ import annotations


import contextlib
import copy
import logging
import warnings
from typing import Any, Iterator, Mapping


from radiolab.errors import OptionalDependencyError

PYRADIOMICS_INSTALL = ("`make install`, or `pip install numpy versioneer` followed by "
                       "`pip install --no-build-isolation pyradiomics==3.0.1`")


def pyradiomics_module():
    """Import pyradiomics (module ``radiomics``) or say how to install it."""
    try:
        import radiomics
        from radiomics import featureextractor, imageoperations  # noqa: F401
    except ImportError as error:
        raise OptionalDependencyError("pyradiomics", "radiomic feature extraction",
                                      install=PYRADIOMICS_INSTALL) from error
    return radiomics


def pyradiomics_version() -> str:
    """The installed pyradiomics version, e.g. ``3.0.1``.

    Raises
    ------
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    radiomics = pyradiomics_module()
    from importlib import metadata

    try:
        return metadata.version("pyradiomics")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return str(radiomics.__version__).lstrip("v")


@contextlib.contextmanager
def quiet_validation() -> Iterator[None]:
    """Silence what pyradiomics' schema validation prints on its own.

    pykwalify loads pyradiomics' schema extension with the deprecated
    ``SourceFileLoader.load_module`` and logs every schema error itself; radiolab
    reports the errors in its own message instead.
    """
    import pykwalify.core

    log = pykwalify.core.log
    disabled = log.disabled
    log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"the load_module\(\) method is deprecated",
                                    category=DeprecationWarning)
            yield
    finally:
        log.disabled = disabled


class _KeepErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip().splitlines()[0] if record.getMessage() else "")


@contextlib.contextmanager
def captured_pyradiomics_log() -> Iterator[_KeepErrors]:
    """Collect pyradiomics' error messages instead of letting it print to stderr.

    pyradiomics catches a failing feature, logs the error and returns NaN; the messages
    collected here go into ``skip_reason`` next to the NaN they explain.
    """
    radiomics_logger = logging.getLogger("radiomics")
    keep = _KeepErrors()
    levels = [(handler, handler.level) for handler in radiomics_logger.handlers]
    for handler, _ in levels:
        handler.setLevel(logging.CRITICAL + 1)
    radiomics_logger.addHandler(keep)
    try:
        yield keep
    finally:
        radiomics_logger.removeHandler(keep)
        for handler, level in levels:
            handler.setLevel(level)


def new_extractor(params: Mapping[str, Any]):
    pyradiomics_module()
    from radiomics import featureextractor

    with quiet_validation():
        return featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(dict(params)))


class MapRefused(ValueError):
    """A region too large for voxel-based feature maps."""


