"""Grad-CAM heat maps (Selvaraju et al., ICCV 2017), PNG overlays and NRRD heat maps.

For the built-in DenseNets (global average pooling then one linear layer) Grad-CAM on
the last feature map equals the class activation map (CAM, Zhou et al., CVPR 2016) up
to a positive factor. Heat maps are scaled to [0, 1] per slice.

The layer is the model's ``cam_layer`` attribute (built-ins), a named module, or else
the last ``Conv2d``. TorchScript models do not support hooks and have no heat maps.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radiolab.classify.data import ScanSlices
from radiolab.classify.models import class_logits
from radiolab.errors import ParameterError
from radiolab.io import atomic_path, write_volume


def find_cam_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose output Grad-CAM uses.

    Raises
    ------
    ValueError
        If ``name`` is not a module of the model, the model is TorchScript, or it has
        no Conv2d layer.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ParameterError("heat maps need forward hooks, which TorchScript models do not support")
    modules = dict(model.named_modules())
    name = name or getattr(model, "cam_layer", None)
    if name:
        if name not in modules:
            raise ParameterError(f"no layer named {name!r} in the model; e.g. {', '.join(list(modules)[1:6])}")
        return modules[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ParameterError("the model has no Conv2d layer to take heat maps from; name one with cam_layer")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor, *, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the disease logit for a batch.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode.
    images : torch.Tensor
        (N, C, H, W) on the model's device.
    layer : str, optional
        Module name (default: the model's ``cam_layer`` or last Conv2d).

    Returns
    -------
    cams : numpy.ndarray
        (N, H, W) float32 in [0, 1].
    probabilities : numpy.ndarray
        (N,) disease probabilities.
    """
    target = find_cam_layer(model, layer)
    store: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        store["activation"] = tensor
        tensor.register_hook(lambda grad: store.__setitem__("gradient", grad))

    model.eval()
    handle = target.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = class_logits(model(images))
            logits.sum().backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    activation = store["activation"].detach()
    gradient = store["gradient"].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12).view(-1, 1, 1)
    cam = torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam))
    return cam.cpu().numpy().astype(np.float32), torch.sigmoid(logits.detach()).cpu().numpy()


def scan_cams(model: nn.Module, scan: ScanSlices, *, device: torch.device, batch_size: int = 16,
              in_channels: int = 1, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of every slice of a scan: (n, S, S) heat maps and (n,) probabilities."""
    cams, probs = [], []
    for start in range(0, len(scan), batch_size):
        batch = torch.from_numpy(np.asarray(scan.images[start:start + batch_size], dtype=np.float32))[:, None]
        if in_channels > 1:
            batch = batch.expand(-1, in_channels, -1, -1).contiguous()
        c, p = grad_cam(model, batch.to(device), layer=layer)
        cams.append(c)
        probs.append(p)
    return np.concatenate(cams), np.concatenate(probs)


def heatmap_volume(scan: ScanSlices, cams: np.ndarray) -> np.ndarray:
    """Heat maps on the scan's (z, y, x) grid: each classified slice gets its map mapped
    back through the crop, pad and resize; other slices are 0. float32 in [0, 1]."""
    if scan.geometry is None:
        raise ParameterError("heat-map volumes need a CT volume, not a 2-D image")
    volume = np.zeros(scan.shape, dtype=np.float32)
    volume[scan.indices] = np.clip(scan.frame.invert(cams), 0.0, 1.0)
    return volume


def write_cam_outputs(folder: str | os.PathLike[str], scan: ScanSlices, cams: np.ndarray,
                      probabilities: np.ndarray, *, n_overlay: int = 4) -> list[str]:
    """``<id>_cam.png`` (overlays of the ``n_overlay`` most probable slices) and, for
    volumes, ``<id>_cam.nrrd`` (heat map in the volume's geometry). Returns the paths."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = []
    if scan.geometry is not None:
        path = os.path.join(folder, f"{scan.row.id}_cam.nrrd")
        write_volume(path, heatmap_volume(scan, cams), scan.geometry,
                     fields={"radiolab_heatmap": "grad-cam", "radiolab_subject": scan.row.subject})
        written.append(path)
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:n_overlay]
    path = os.path.join(folder, f"{scan.row.id}_cam.png")
    overlay_png(path, [np.asarray(scan.images[i], dtype=np.float32) for i in order], [cams[i] for i in order],
                [f"slice {int(scan.indices[i])}  p={float(probabilities[i]):.2f}" if scan.geometry is not None
                 else f"p={float(probabilities[i]):.2f}" for i in order],
                title=f"{scan.row.subject}: Grad-CAM")
    written.append(path)
    return written


def overlay_png(path: str | os.PathLike[str], images: Sequence[np.ndarray], heats: Sequence[np.ndarray],
                captions: Sequence[str], *, title: str = "") -> None:
    """Grey slices with their heat maps (jet, opacity growing with heat), side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(images))
    figure = Figure(figsize=(3.0 * n, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    for k, (image, heat, caption) in enumerate(zip(images, heats, captions)):
        axis = figure.add_subplot(1, n, k + 1)
        axis.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        rgba = _jet(heat)
        rgba[..., 3] = 0.6 * np.clip(heat, 0.0, 1.0)
        axis.imshow(rgba, interpolation="bilinear")
        axis.set_title(caption, fontsize=8)
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def _jet(values: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["jet"](np.clip(values, 0.0, 1.0)).astype(np.float32)
