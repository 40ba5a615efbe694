"""Shared fixtures: small seeded phantoms and cohorts."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from radiolab.synthetic import chest_phantom, make_cohort

SMALL_SHAPE = (64, 96, 96)
SMALL_SPACING = (5.0, 3.5, 3.5)


@pytest.fixture(scope="session")
def phantom():
    return chest_phantom(SMALL_SHAPE, SMALL_SPACING, lesion_fraction=0.2, seed=3)


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory):
    """Four small phantoms written as NRRD, with their true lesion fractions."""
    folder = tmp_path_factory.mktemp("cohort")
    written = make_cohort(folder, 4, shape=SMALL_SHAPE, spacing=SMALL_SPACING, seed=10)
    return folder, written


DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    """Path of a real scan under ``tests/data`` (see its README); ``.tar.gz`` folders are unpacked.

    ``real_data("cip/TestInput.nrrd")`` is the file itself; ``real_data("dcm_qa_ct/GE")``
    unpacks ``dcm_qa_ct/GE.tar.gz`` once per session and returns the folder.
    """
    unpacked = tmp_path_factory.mktemp("real_data")

    def path(name: str) -> Path:
        direct = DATA / name
        if direct.exists():
            return direct
        archive = DATA / f"{name}.tar.gz"
        if not archive.exists():
            raise FileNotFoundError(f"no test data {name!r} under {DATA}")
        target = unpacked / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                tar.extractall(target.parent, filter="data")
        return target

    return path


def pytest_terminal_summary(terminalreporter):
    """Print ``bad inputs: N tried, N handled`` when the bad-input corpus ran."""
    import sys

    corpus = sys.modules.get("bad_inputs.corpus")
    if corpus is not None and (corpus.TALLY.results or corpus.TALLY.skipped):
        terminalreporter.write_line(corpus.TALLY.summary())
