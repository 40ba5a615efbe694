"""Every package radiolab imports is declared in pyproject.toml, core or in its extra."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Imported under one name, declared under another (distributed comes with dask's extra).
DECLARED_AS = {"distributed": "dask[distributed]"}


def _name(requirement: str) -> str:
    """Normalised project name of a requirement, with its extras: ``dask[distributed]``."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(\[[^\]]*\])?", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() + (match.group(2) or "")


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> files of radiolab importing it, anywhere in the file."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "radiolab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "radiolab" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared():
    project = _project()
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    declared = {_name(r) for r in requirements} | {_name(r).split("[")[0] for r in requirements}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        names = {_name(d) for d in distributions.get(module, [module])}
        if module in DECLARED_AS:
            names = {DECLARED_AS[module]}
        if not names & declared:
            undeclared[module] = sorted(files)
    assert undeclared == {}


def test_extras_are_split_by_need():
    project = _project()
    core = {_name(r) for r in project["dependencies"]}
    extras = {extra: {_name(r) for r in requirements} for extra, requirements in project["optional-dependencies"].items()}
    assert {"threadpoolctl", "matplotlib"} <= core  # segment limits BLAS threads; correlate and --qc draw
    assert not core & {"torch", "monai", "dask", "pyradiomics", "pandas", "pyarrow", "jinja2"}
    assert extras["dask"] == {"dask[distributed]", "dask-jobqueue"}
    assert extras["torch"] == {"torch", "monai"}
    assert "pyradiomics==3.0.1" in project["optional-dependencies"]["radiomics"]
    assert extras["report"] == {"jinja2"}
    assert extras["dicom"] == {"highdicom"}
    assert project["optional-dependencies"]["all"] == ["radiolab[dask,torch,radiomics,report,dicom]"]
