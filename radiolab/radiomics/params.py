"""Pyradiomics parameters: loading, validation and their hash."""

from __future__ import annotations


import copy
import hashlib
import json
import os
from typing import Any, Mapping

from radiolab.data import RADIOMICS_PARAMS, resource
from radiolab.errors import InputError
from radiolab.radiomics.engine import pyradiomics_module, quiet_validation

# Shipped in the package (radiolab.data); the repository's pipelines/radiomics.yaml is its copy.
DEFAULT_PARAMS = resource("pipelines", RADIOMICS_PARAMS)


def load_params(params: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read and validate pyradiomics parameters.

    Parameters
    ----------
    params : str, os.PathLike, mapping or None
        A pyradiomics parameter file (YAML or JSON), an already parsed mapping, or None
        for radiolab's default ``pipelines/radiomics.yaml`` (shipped in `radiolab.data`).

    Returns
    -------
    dict
        The parameters (``imageType``, ``featureClass``, ``setting``, ``voxelSetting``),
        checked against pyradiomics' own schema.

    Raises
    ------
    InputError
        Naming the file, if it is missing, not YAML, or fails pyradiomics' schema
        validation (unknown setting, bad value, unknown feature class or image type).
    OptionalDependencyError
        If pyradiomics is not installed.
    """
    pyradiomics_module()
    if params is None:
        where = str(DEFAULT_PARAMS)
        data = _parse_params_text(where, DEFAULT_PARAMS.read_text(encoding="utf-8"))
    elif isinstance(params, Mapping):
        where, data = "<parameters>", copy.deepcopy(dict(params))
    else:
        where = os.fspath(params)
        data = _read_params_file(where)
    _validate_params(where, data)
    return data


def _read_params_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise InputError(path, "parameter file does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read parameter file: {error}") from None
    return _parse_params_text(path, text)


def _parse_params_text(path: str, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(path, f"not a YAML/JSON pyradiomics parameter file: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(path, "a pyradiomics parameter file must hold a mapping with keys imageType, "
                               f"featureClass, setting and voxelSetting; found {type(data).__name__}")
    return data


def _validate_params(where: str, data: dict[str, Any]) -> None:
    """pyradiomics' schema (pykwalify), plus the checks that pyradiomics does late."""
    import pykwalify.core
    import pykwalify.errors
    from radiomics import getParameterValidationFiles

    schema_file, schema_functions = getParameterValidationFiles()
    with quiet_validation():
        core = pykwalify.core.Core(source_data=data, schema_files=[schema_file], extensions=[schema_functions])
        try:
            core.validate(raise_exception=True)
        except pykwalify.errors.PyKwalifyException:
            problems = "; ".join(str(e) for e in (core.validation_errors or [])) or "schema validation failed"
            raise InputError(where, f"not a valid pyradiomics parameter file: {problems}") from None
        except (ValueError, TypeError, KeyError) as error:  # raised by pyradiomics' schema functions
            raise InputError(where, f"not a valid pyradiomics parameter file: {error}") from None
    setting = data.get("setting") or {}
    spacing = setting.get("resampledPixelSpacing")
    if spacing is not None and len(spacing) != 3:
        raise InputError(where, "setting resampledPixelSpacing needs three values (x, y, z in mm), "
                                f"got {spacing}")


def params_sha256(params: Mapping[str, Any]) -> str:
    """SHA-256 of the parameters as canonical JSON (sorted keys, no spaces).

    Comments and layout of the file do not change it; any setting does.
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


