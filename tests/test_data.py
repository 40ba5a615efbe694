"""Tests of radiolab.data: the built-in files ship inside the package, load through
importlib.resources, and equal the repository's documented copies.

`make test-wheel` runs this file again against radiolab installed from its wheel in a
fresh virtual environment (RADIOLAB_WHEEL_TEST=1), from a folder outside the source tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import radiolab
from radiolab.data import RADIOMICS_PARAMS, model_names, pipeline_names, resource
from radiolab.mixture import BUILTIN_MODELS, N_CLASSES, load_mixture
from radiolab.pipeline import STAGES, builtin_pipelines, load_pipeline

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(radiolab.__file__).resolve().parent


def _folder_files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob(pattern))}


@pytest.mark.parametrize("folder, pattern", [("models", "*.json"), ("pipelines", "*.yaml")])
def test_repository_copies_are_byte_identical_to_the_packaged_files(folder, pattern):
    documented = _folder_files(REPOSITORY / folder, pattern)
    packaged = {entry.name: entry.read_bytes() for entry in resource(folder).iterdir()
                if Path(entry.name).match(pattern)}
    assert documented, f"no {pattern} under {REPOSITORY / folder}"
    assert sorted(documented) == sorted(packaged)
    for name, data in documented.items():
        assert data == packaged[name], f"{folder}/{name} differs from radiolab/data/{folder}/{name}"


def test_every_packaged_pipeline_loads_by_name():
    names = pipeline_names()
    assert names == builtin_pipelines() == ["default", "zaffino2021"]
    for name in names:
        pipeline = load_pipeline(name)
        assert Path(pipeline.source).resolve().is_relative_to(PACKAGE_DIR / "data" / "pipelines")
        assert pipeline.stages and all(spec.stage in STAGES for spec in pipeline.stages)


def test_builtin_mixture_loads_by_name():
    assert model_names() == list(BUILTIN_MODELS)
    mixture = load_mixture("zaffino2021")
    assert mixture.means.shape == (N_CLASSES,)
    assert list(mixture.means) == sorted(mixture.means)


def test_default_radiomics_parameters_are_packaged():
    from radiolab import radiomics

    assert Path(radiomics.DEFAULT_PARAMS).resolve() == PACKAGE_DIR / "data" / "pipelines" / RADIOMICS_PARAMS
    data = yaml.safe_load(radiomics.DEFAULT_PARAMS.read_text(encoding="utf-8"))
    assert set(data) == {"imageType", "featureClass", "setting", "voxelSetting"}


def test_default_radiomics_parameters_pass_pyradiomics_schema():
    pytest.importorskip("radiomics", reason="pyradiomics is not installed (`make install` installs it); "
                                            "its schema check needs it")
    from radiolab import radiomics

    data = yaml.safe_load(radiomics.DEFAULT_PARAMS.read_text(encoding="utf-8"))
    assert radiomics.load_params(None) == data


@pytest.mark.skipif(os.environ.get("RADIOLAB_WHEEL_TEST") != "1",
                    reason="checks an installed wheel; run by `make test-wheel`")
def test_radiolab_is_imported_from_the_installed_wheel():
    assert PACKAGE_DIR != REPOSITORY / "radiolab", f"radiolab imported from the source tree {PACKAGE_DIR}"
    assert "site-packages" in PACKAGE_DIR.parts
