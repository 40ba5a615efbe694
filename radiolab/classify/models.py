"""Models of ``radiolab classify`` and safe checkpoint files (imports torch and MONAI).

Built-in models take (N, in_channels, H, W) slices in [0, 1] and return one logit per
slice, shape (N, 1); the joint model returns ``(logits, segmentation_logits)`` with the
segmentation at input resolution, shape (N, 1, H, W).

* ``densenet121`` / ``densenet169``: MONAI's 2-D DenseNet (no torchvision needed).
* ``densenet-tiny``: the same architecture with 16 initial features, growth rate 8 and
  four blocks of 2 layers; for tests and CPU demonstrations.
* ``jcs`` / ``jcs-tiny``: joint classification and segmentation. DenseNet features
  after the third dense block (stride 16) feed atrous spatial pyramid pooling
  (`monai.networks.blocks.SimpleASPP`, dilations 1, 2, 4, 6) and a segmentation head
  predicting the lesion mask; the classification branch receives the final DenseNet
  features (stride 32) together with the predicted mask, as the features, the
  mask-weighted features and the mask itself.

User models: ``package.module:callable`` (called without arguments, returning an
``nn.Module``) or a TorchScript file. Their output may be logits of shape (N,), (N, 1)
or (N, 2) (softmax, class 1 is the disease), or a tuple whose first item is that.

Checkpoints hold only tensors, numbers, strings, lists and dicts and are always read
with ``torch.load(weights_only=True)``, which refuses files that would run code.
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from radiolab.classify.recipes import MODEL_NAMES, ClassifyConfig
from radiolab.errors import DataError, InputError, ParameterError
from radiolab.io import atomic_path

DENSENET_BLOCKS = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet-tiny": (2, 2, 2, 2),
}
TINY = {"init_features": 16, "growth_rate": 8}
CHECKPOINT_FORMAT = "radiolab-classify"
CHECKPOINT_VERSION = 1


def _densenet_settings(config: ClassifyConfig, base: str) -> dict[str, Any]:
    tiny = base == "densenet-tiny"
    return {
        "init_features": config.init_features or (TINY["init_features"] if tiny else 64),
        "growth_rate": config.growth_rate or (TINY["growth_rate"] if tiny else 32),
        "block_config": tuple(config.block_config or DENSENET_BLOCKS[base]),
    }


def _monai_densenet(in_channels: int, *, init_features: int, growth_rate: int, block_config) -> nn.Module:
    from radiolab.classify import require_monai

    require_monai()
    from monai.networks.nets import DenseNet

    # Non-inplace ReLU keeps activations intact for Grad-CAM hooks.
    return DenseNet(spatial_dims=2, in_channels=in_channels, out_channels=1, init_features=init_features,
                    growth_rate=growth_rate, block_config=tuple(block_config), act=("relu", {"inplace": False}))


class JointClassifierSegmenter(nn.Module):
    """Joint classification and segmentation on a 2-D DenseNet.

    Parameters
    ----------
    in_channels : int
    init_features, growth_rate : int
        DenseNet width.
    block_config : tuple of 4 int
        Layers per dense block.
    aspp_channels : int, optional
        Channels of each ASPP branch (default: an eighth of the stride-16 features).

    Forward
    -------
    x : (N, C, H, W) -> (logits (N, 1), segmentation logits (N, 1, H, W))
    """

    cam_layer = "fuse"

    def __init__(self, in_channels: int = 1, *, init_features: int = 64, growth_rate: int = 32,
                 block_config=(6, 12, 32, 32), aspp_channels: int | None = None) -> None:
        super().__init__()
        if len(block_config) != 4:
            raise ParameterError(f"the joint model needs 4 dense blocks, got block_config={tuple(block_config)}")
        features = _monai_densenet(in_channels, init_features=init_features, growth_rate=growth_rate,
                                   block_config=block_config).features
        names = [name for name, _ in features.named_children()]
        cut = names.index("transition3")
        self.encoder = nn.Sequential(*[getattr(features, n) for n in names[:cut]])      # stride 16
        self.deep = nn.Sequential(*[getattr(features, n) for n in names[cut:]])         # stride 32
        channels = init_features
        for index, layers in enumerate(block_config):
            channels += layers * growth_rate
            if index == 2:
                mid_channels = channels
            if index < 3:
                channels //= 2
        final_channels = channels
        branch = aspp_channels or max(8, mid_channels // 8)
        from monai.networks.blocks import SimpleASPP

        self.aspp = SimpleASPP(2, mid_channels, branch, kernel_sizes=(1, 3, 3, 3), dilations=(1, 2, 4, 6))
        self.seg_head = nn.Sequential(
            nn.Conv2d(4 * branch, branch, 3, padding=1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(),
            nn.Conv2d(branch, 1, 1),
        )
        fused = max(16, final_channels // 2)
        self.fuse = nn.Sequential(nn.Conv2d(2 * final_channels + 1, fused, 1, bias=False),
                                  nn.BatchNorm2d(fused), nn.ReLU())
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(fused, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.encoder(x)
        seg = self.seg_head(self.aspp(mid))
        deep = F.relu(self.deep(mid))
        mask = F.adaptive_avg_pool2d(torch.sigmoid(seg), deep.shape[-2:])
        fused = self.fuse(torch.cat([deep, deep * mask, mask], dim=1))
        logits = self.classifier(fused)
        seg_full = F.interpolate(seg, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, seg_full


def build_model(config: ClassifyConfig) -> nn.Module:
    """The untrained model a config names (weights are loaded separately).

    Raises
    ------
    ValueError
        If the name is neither built-in, nor ``module:callable``, nor an existing file;
        the message lists the built-in names.
        Also if a user callable does not return an ``nn.Module``.
    """
    name = config.model
    if name in ("densenet121", "densenet169", "densenet-tiny"):
        model = _monai_densenet(config.in_channels, **_densenet_settings(config, name))
        model.cam_layer = "features"
        return model
    if name in ("jcs", "jcs-tiny"):
        base = "densenet169" if name == "jcs" else "densenet-tiny"
        return JointClassifierSegmenter(config.in_channels, **_densenet_settings(config, base))
    if os.path.isfile(name):
        return load_torchscript(name)
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as error:
            raise ParameterError(f"cannot load model {name!r}: {error}") from None
        model = target()
        if not isinstance(model, nn.Module):
            raise ParameterError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    raise ParameterError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}, "
                     "a package.module:callable, or a TorchScript file")


def load_torchscript(path: str) -> nn.Module:
    """Load a TorchScript model file (on CPU)."""
    try:
        with warnings.catch_warnings():
            # torch 2.9+ marks TorchScript as deprecated; the format is still read.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
            return torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise InputError(path, f"not a TorchScript model: {str(error).splitlines()[0]}") from None


def class_logits(output: Any) -> torch.Tensor:
    """(N,) disease logits from a model output: (N,), (N, 1), (N, 2) or a tuple of those."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.ndim == 2 and output.shape[1] == 2:
        return output[:, 1] - output[:, 0]  # log-odds of class 1 under a softmax
    if output.ndim == 2 and output.shape[1] == 1:
        return output[:, 0]
    if output.ndim == 1:
        return output
    raise DataError(f"model output of shape {tuple(output.shape)}: expected (N,), (N, 1) or (N, 2) logits")


def segmentation_logits(output: Any) -> torch.Tensor | None:
    """The second item of a tuple output (N, 1, H, W), or None."""
    if isinstance(output, (tuple, list)) and len(output) > 1:
        return output[1]
    return None


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ParameterError(f"unknown device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} requested but CUDA is not available")
    return resolved


# -- checkpoints -----------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike[str], **content: Any) -> None:
    """Write a checkpoint atomically: ``content`` must hold only tensors, numbers,
    strings, None, lists, tuples and dicts (what ``weights_only`` loading accepts)."""
    data = _plain({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **content})
    with atomic_path(path) as temporary:
        torch.save(data, temporary)


def _plain(value: Any) -> Any:
    """Numbers, strings, None, tensors, and lists/dicts of them; numpy scalars become
    Python numbers so that ``weights_only`` loading accepts the file."""
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str)):
        return value.item() if hasattr(value, "item") and not isinstance(value, torch.Tensor) else value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by `save_checkpoint`, or a plain state dict, safely.

    Uses ``torch.load(weights_only=True, map_location="cpu")``: tensors and plain
    containers only; a file that would execute code when unpickled is refused.

    Raises
    ------
    InputError
        If the file is missing, unreadable, or refused by the safe loader.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "checkpoint file does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [ln.strip() for ln in str(error).splitlines() if "Unsupported" in ln or "unsupported" in ln]
        reason = lines[0] if lines else type(error).__name__
        raise InputError(path, "refused: the file holds Python objects that safe loading "
                               f"(torch.load weights_only=True) does not allow; {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise InputError(path, f"not a readable torch checkpoint: {str(error).splitlines()[0] if str(error) else error!r}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"expected a dict of weights, found {type(data).__name__}")
    return data


def state_dict_of(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights in a checkpoint dict or a plain state dict."""
    for key in ("model", "state_dict"):
        if isinstance(data.get(key), dict):
            return data[key]
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data
    raise DataError("no model weights found (expected a 'model' or 'state_dict' entry, or a state dict)")


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = False) -> dict[str, list[str]]:
    """Copy weights from a file into a model; names or shapes that differ are skipped
    (e.g. a classifier head of another size) unless ``strict``.

    Returns
    -------
    dict with ``loaded``, ``skipped`` (in the file, not used) and ``missing`` (in the
    model, not in the file) parameter names.

    Raises
    ------
    InputError
        If the file cannot be read safely or no weight fits the model.
    """
    try:
        source = state_dict_of(load_checkpoint(path))
    except ValueError as error:
        raise InputError(path, str(error)) from None
    target = model.state_dict()
    usable = {k: v for k, v in source.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    skipped = sorted(set(source) - set(usable))
    missing = sorted(set(target) - set(usable))
    if strict and (skipped or missing):
        raise InputError(path, f"weights do not match the model: {len(skipped)} unused, {len(missing)} missing "
                               f"(e.g. {(skipped + missing)[:3]})")
    if not usable:
        raise InputError(path, "no weight in the file matches the model's parameter names and shapes")
    model.load_state_dict(usable, strict=False)
    return {"loaded": sorted(usable), "skipped": skipped, "missing": missing}
