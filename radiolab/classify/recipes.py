"""Settings of ``radiolab classify``: one dataclass, and the published recipes as presets.

A recipe is a named set of overrides of `ClassifyConfig`; every field can be overridden
again by the caller (``config_for("yang2020", epochs=5)``). The settings are written
into every checkpoint and output folder as provenance.

Recipes
-------
``zhao2020``
    Zhao et al. 2020, COVID-CT (arXiv:2003.13865): DenseNet-169 on single slices of
    480 px, random resized crop at scale 0.5-1, horizontal flip, brightness and
    contrast jitter 0.2, Adam at lr 1e-4, batch 16, cosine schedule of period 10
    epochs; decision at probability 0.5 (the arg-max of the two-class softmax).
``yang2020``
    Yang et al. 2020, HRCT: DenseNet in the lung window (width 1200, level -600 HU),
    lesion slices of patients and every 3rd lung slice of controls, SGD with momentum
    0.9 and a step schedule of 5 epochs, random flips, 20 epochs, batch 32; the
    subject probability is the mean over slices after dropping the first and last 10 %;
    decision threshold 0.8.

Settings the papers do not state are radiolab's choices and are listed in
``docs/classify.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from radiolab.errors import ParameterError

MODEL_NAMES = ("densenet121", "densenet169", "densenet-tiny", "jcs", "jcs-tiny")
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("cosine", "step", "none")
THRESHOLD_RULES = ("youden",)
CI_METHODS = ("delong", "bootstrap")
SELECT_ON = ("auc", "loss")


@dataclass(frozen=True)
class ClassifyConfig:
    """Everything that decides how slices are made, how a model is trained and used.

    Attributes
    ----------
    model : str
        ``densenet121``, ``densenet169``, ``densenet-tiny`` (4 blocks of 2 layers, for
        tests and CPU demos), ``jcs`` (joint classification and segmentation on a
        DenseNet-169), ``jcs-tiny``, a ``package.module:callable`` returning an
        ``nn.Module``, or a TorchScript file.
    recipe : str or None
        Name of the recipe the settings started from (provenance only).
    image_size : int
        Edge of the square network input, in pixels.
    in_channels : int
        Input channels; the grey slice is repeated to fill them.
    init_features, growth_rate : int or None
        DenseNet width overrides (None: the architecture's own, 64 and 32).
    block_config : tuple of int or None
        DenseNet layers per dense block (None: the architecture's own).
    weights : str or None
        Initial weights: a state dict or a radiolab checkpoint file. Nothing is ever
        downloaded.
    epochs, batch_size : int
        Training length and mini-batch size.
    optimizer : {"adam", "sgd"}
    lr, momentum, weight_decay : float
        Learning rate, SGD momentum, L2 weight decay.
    scheduler : {"cosine", "step", "none"}
        ``cosine``: cosine annealing with period ``cosine_period`` epochs;
        ``step``: multiply lr by ``step_gamma`` every ``step_size`` epochs.
    crop_scale : float
        Smallest area fraction of the random resized crop (1 turns it off).
    hflip, vflip : bool
        Random horizontal / vertical flips with probability 0.5.
    brightness, contrast : float
        Jitter amplitudes: factors drawn from [1 - a, 1 + a].
    window_width, window_level : float
        Display window applied to CT volumes before scaling to [0, 1], in HU.
    crop_margin_mm : float or None
        Volumes are cropped to the lung's bounding box plus this margin (mm);
        None keeps the full slice.
    min_lung_area_mm2 : float
        Slices of a volume are used when their lung area is at least this (mm^2).
    slice_step : int
        Training slices from a volume: every ``slice_step``-th lung slice.
    lesion_slices : bool
        Training slices of a positive volume with a lesion mask: the slices with
        lesion, instead of every ``slice_step``-th lung slice.
    mask_labels : tuple of int
        Label values taken as lesion in a radiolab label map (3 GGO, 4 consolidation).
    cls_weight, seg_weight : float
        Loss weights of the classification and segmentation terms (joint models).
    trim : float
        Share of slices dropped at each end (by slice position) before the subject
        mean.
    threshold : str or float
        ``"youden"`` (chosen on validation subjects) or a fixed probability.
    sensitivity : float or None
        If given, the threshold is the highest one reaching this sensitivity on the
        validation subjects (overrides ``threshold``).
    select_on : {"auc", "loss"}
        Validation quantity that picks the best epoch (subject AUC, slice loss).
    seed : int
        Seed of weights, shuffling and augmentation.
    device : str
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    num_workers : int
        DataLoader worker processes.
    """

    model: str = "densenet169"
    recipe: str | None = None
    image_size: int = 224
    in_channels: int = 1
    init_features: int | None = None
    growth_rate: int | None = None
    block_config: tuple[int, ...] | None = None
    weights: str | None = None
    epochs: int = 20
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    cosine_period: int = 10
    step_size: int = 5
    step_gamma: float = 0.1
    crop_scale: float = 1.0
    hflip: bool = False
    vflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    window_width: float = 1200.0
    window_level: float = -600.0
    crop_margin_mm: float | None = 10.0
    min_lung_area_mm2: float = 1000.0
    slice_step: int = 1
    lesion_slices: bool = False
    mask_labels: tuple[int, ...] = (3, 4)
    cls_weight: float = 1.0
    seg_weight: float = 1.0
    trim: float = 0.1
    threshold: str | float = "youden"
    sensitivity: float | None = None
    select_on: str = "auc"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.block_config is not None:
            object.__setattr__(self, "block_config", tuple(int(b) for b in self.block_config))
        object.__setattr__(self, "mask_labels", tuple(int(v) for v in self.mask_labels))
        object.__setattr__(self, "threshold", parse_threshold(self.threshold))
        _check_int(self, "image_size", 16)
        _check_int(self, "in_channels", 1)
        _check_int(self, "epochs", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "cosine_period", 1)
        _check_int(self, "step_size", 1)
        _check_int(self, "slice_step", 1)
        _check_int(self, "num_workers", 0)
        for name in ("init_features", "growth_rate"):
            if getattr(self, name) is not None:
                _check_int(self, name, 1)
        if self.block_config is not None and (not self.block_config or min(self.block_config) < 1):
            raise ParameterError(f"block_config must list positive layer counts, got {self.block_config}")
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_choice(self, "scheduler", SCHEDULERS)
        _check_choice(self, "select_on", SELECT_ON)
        _check_range(self, "lr", 0.0, math.inf, low_open=True)
        _check_range(self, "momentum", 0.0, 1.0)
        _check_range(self, "weight_decay", 0.0, math.inf)
        _check_range(self, "step_gamma", 0.0, 1.0, low_open=True)
        _check_range(self, "crop_scale", 0.0, 1.0, low_open=True)
        _check_range(self, "brightness", 0.0, 1.0)
        _check_range(self, "contrast", 0.0, 1.0)
        _check_range(self, "window_width", 0.0, math.inf, low_open=True)
        _check_range(self, "min_lung_area_mm2", 0.0, math.inf)
        _check_range(self, "cls_weight", 0.0, math.inf)
        _check_range(self, "seg_weight", 0.0, math.inf)
        if not 0.0 <= self.trim < 0.5:
            raise ParameterError(f"trim must lie in [0, 0.5), got {self.trim}")
        if self.crop_margin_mm is not None:
            _check_range(self, "crop_margin_mm", 0.0, math.inf)
        if self.sensitivity is not None and not 0.0 < self.sensitivity <= 1.0:
            raise ParameterError(f"sensitivity must lie in (0, 1], got {self.sensitivity}")
        if not self.model:
            raise ParameterError("model must name a built-in model, a package.module:callable or a file")

    @property
    def is_joint(self) -> bool:
        """True for the built-in joint classification and segmentation models."""
        return self.model in ("jcs", "jcs-tiny")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ClassifyConfig":
        """Rebuild a config from `to_json` output; unknown keys are an error."""
        valid = {f.name for f in fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ParameterError(f"unknown classify setting(s) {sorted(unknown)}; valid: {sorted(valid)}")
        values = dict(data)
        for key in ("block_config", "mask_labels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def parse_threshold(value: str | float) -> str | float:
    """``"youden"`` or a probability in [0, 1]; numbers given as text are converted."""
    if isinstance(value, str):
        if value in THRESHOLD_RULES:
            return value
        try:
            value = float(value)
        except ValueError:
            raise ParameterError(f"threshold must be 'youden' or a probability, got {value!r}") from None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"threshold must lie in [0, 1], got {value}")
    return value


def _check_int(config: ClassifyConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    object.__setattr__(config, name, int(value))


def _check_choice(config: ClassifyConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ParameterError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


def _check_range(config: ClassifyConfig, name: str, low: float, high: float, *, low_open: bool = False) -> None:
    value = float(getattr(config, name))
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ParameterError(f"{name} must lie in {interval}, got {getattr(config, name)!r}")
    object.__setattr__(config, name, value)


RECIPES: dict[str, dict[str, Any]] = {
    "zhao2020": dict(
        model="densenet169", image_size=480, batch_size=16, optimizer="adam", lr=1e-4,
        scheduler="cosine", cosine_period=10, crop_scale=0.5, hflip=True,
        brightness=0.2, contrast=0.2, epochs=30, threshold=0.5,
    ),
    "yang2020": dict(
        model="densenet169", image_size=512, batch_size=32, optimizer="sgd", lr=1e-2,
        momentum=0.9, scheduler="step", step_size=5, step_gamma=0.1, hflip=True, vflip=True,
        window_width=1200.0, window_level=-600.0, slice_step=3, lesion_slices=True,
        epochs=20, trim=0.1, threshold=0.8,
    ),
}


def config_for(recipe: str | None = None, **overrides: Any) -> ClassifyConfig:
    """Settings of a recipe (or the defaults) with some fields replaced.

    Parameters
    ----------
    recipe : {"zhao2020", "yang2020"} or None
        Starting point; None starts from the `ClassifyConfig` defaults.
    **overrides
        Fields to replace; None values are ignored, so unset CLI options keep the
        recipe's values.

    Raises
    ------
    ValueError
        If the recipe or a field name is unknown (the message lists the valid ones),
        or a value is out of range.
    """
    if recipe is not None and recipe not in RECIPES:
        raise ParameterError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    valid = {f.name for f in fields(ClassifyConfig)}
    unknown = set(overrides) - valid
    if unknown:
        raise ParameterError(f"unknown classify setting(s) {sorted(unknown)}; valid: {sorted(valid)}")
    values: dict[str, Any] = dict(RECIPES.get(recipe, {})) if recipe else {}
    values["recipe"] = recipe
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(ClassifyConfig(), **values)
