"""The ``zaffino2021`` preset reproduces, bit for bit, what commit 8472b8a computed.

Volumes come from ``tests/frozen_phantom.py`` (a frozen copy of the phantom generator),
so changes to ``radiolab.synthetic`` cannot change what is checked. The expected arrays
in ``tests/data/paper_preset`` were written by that commit's code (see its ``make.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from radiolab.io import Geometry, write_volume

FIXTURE = Path(__file__).parent / "data" / "paper_preset"


def _load_make():
    spec = importlib.util.spec_from_file_location("paper_preset_make", FIXTURE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _load_make()


def _expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURE / f"{name}.npz") as stored:
        return {key: stored[key] for key in ("mask", "labels", "median")}


def _assert_identical(name: str, key: str, actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, f"{name} {key}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name} {key}: dtype {actual.dtype} != {expected.dtype}"
    differing = int(np.count_nonzero(actual != expected))
    assert differing == 0, f"{name} {key}: {differing} voxels differ from commit 8472b8a"


def test_fixture_is_small_and_not_trivial():
    files = sorted(FIXTURE.glob("*.npz"))
    assert {f.stem for f in files} == set(MAKE.CASES)
    assert sum(f.stat().st_size for f in files) < 1_000_000
    for name in MAKE.CASES:
        expected = _expected(name)
        # Every case has lung and several tissue classes, so a broken run cannot match.
        assert expected["mask"].sum() > 1000, name
        assert len(np.unique(expected["labels"][expected["mask"]])) >= 3, name


@pytest.mark.parametrize("name", list(MAKE.CASES))
def test_frozen_generator_gives_the_stored_volumes(name):
    # If this fails, numpy's or scipy's random streams changed, not the lung mask.
    import json

    record = json.loads((FIXTURE / "volumes.json").read_text(encoding="utf-8"))[name]
    volume, spacing = MAKE.case_volume(name)
    assert list(volume.shape) == record["shape"] and list(spacing) == record["spacing_mm"]
    assert MAKE.volume_digest(name) == record["sha256"]


@pytest.mark.parametrize("name", list(MAKE.CASES))
def test_zaffino2021_arrays_are_unchanged(name):
    expected = _expected(name)
    actual = MAKE.case_arrays(name)
    for key in ("mask", "labels", "median"):
        _assert_identical(name, key, actual[key], expected[key])


def test_segment_command_with_paper_preset_is_unchanged(tmp_path):
    from radiolab.cli import main
    from radiolab.io import read_volume

    name = "small_5mm"
    volume, spacing = MAKE.case_volume(name)
    scans = tmp_path / "scans"
    scans.mkdir()
    write_volume(scans / f"{name}.nrrd", volume, Geometry(spacing=spacing))
    overrides = MAKE.CASES[name]["overrides"]
    argv = ["segment", "--in", str(scans), "--out", str(tmp_path / "out"), "--preset", "zaffino2021",
            "--model", "zaffino2021", "--min-island", str(overrides["min_island"]),
            "--closing-radii", *[str(r) for r in overrides["closing_radii"]], "--quiet"]
    assert main(argv) == 0
    expected = _expected(name)
    out = tmp_path / "out"
    for key, suffix in (("mask", "_lung.nrrd"), ("labels", "_labels.nrrd"), ("median", "_labels_median.nrrd")):
        actual = read_volume(out / f"{name}{suffix}").array
        assert np.array_equal(actual.astype(expected[key].dtype), expected[key]), f"{name} {key}"
