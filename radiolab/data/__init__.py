"""Built-in data shipped inside the package, read with `importlib.resources`.

``models/``
    Fitted mixtures by name (``zaffino2021.json``: the paper's published mixture).
``pipelines/``
    Declared pipelines by name (``zaffino2021.yaml``, ``default.yaml``) and the default
    pyradiomics parameters of ``radiolab features`` (``radiomics.yaml``).

The repository's top-level ``models/`` and ``pipelines/`` folders hold the same files
as documented copies to read and edit; the tests check that they are byte-identical.
Because the files are found through the package, they work from an installed wheel.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

#: The default pyradiomics parameter file, under ``pipelines/``.
RADIOMICS_PARAMS = "radiomics.yaml"


def resource(*parts: str) -> Any:
    """A built-in file, e.g. ``resource("models", "zaffino2021.json")``.

    Returns
    -------
    importlib.resources.abc.Traversable
        A `pathlib.Path` when the package is installed as files (pip's wheels are).
    """
    node = files(__name__)
    for part in parts:
        node = node / part
    return node


def model_names() -> list[str]:
    """Names of the built-in mixtures (``models/*.json``)."""
    return sorted(entry.name[:-5] for entry in resource("models").iterdir() if entry.name.endswith(".json"))


def pipeline_names() -> list[str]:
    """Names of the built-in pipelines (``pipelines/*.yaml`` that declare stages; the
    pyradiomics parameter file lives there too and is left out)."""
    names = []
    for entry in resource("pipelines").iterdir():
        if entry.name.endswith(".yaml") and any(line.startswith("stages:")
                                                for line in entry.read_text(encoding="utf-8").splitlines()):
            names.append(entry.name[:-5])
    return sorted(names)
