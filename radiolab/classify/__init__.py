"""Slice and subject-level CT classification with torch models (optional extra).

Modules
-------
recipes
    `ClassifyConfig` and the ``zhao2020`` / ``yang2020`` presets (no torch).
data
    Manifest CSV, subject-level split check, volumes and 2-D images to network-ready
    slices (no torch).
metrics
    Trimmed subject mean, AUC with DeLong or bootstrap CI, thresholds, fourfold tables,
    exact McNemar test (no torch).
models, train, predict, cam
    Built-in DenseNets and the joint classification and segmentation model, training,
    prediction and evaluation, Grad-CAM; these import torch and MONAI.

Importing ``radiolab.classify`` loads neither torch nor MONAI; `require_torch` says how
to install them when they are missing.
"""

from __future__ import annotations

from radiolab.errors import OptionalDependencyError


def require_torch(feature: str = "radiolab classify"):
    """Import and return torch, or raise `OptionalDependencyError` saying how to install it."""
    try:
        import torch
    except ImportError as error:
        raise OptionalDependencyError("torch", feature, extra="torch") from error
    return torch


def require_monai(feature: str = "radiolab classify"):
    """Import and return MONAI, or raise `OptionalDependencyError` saying how to install it."""
    try:
        import monai
    except ImportError as error:
        raise OptionalDependencyError("monai", feature, extra="torch") from error
    return monai


__all__ = ["require_monai", "require_torch"]
