"""QC picture of the lung mask on a real whole-chest CT, before and after the real-CT steps.

Before: the paper's pipeline in physical units (threshold, opening, border rule, two
closings of both lungs together: the ``default`` preset of radiolab 0.1). After: the
``default`` preset (body envelope, airways, gut gas, sides split before the closing,
each lung closed alone, pleural envelope). Writes ``docs/img/lung_testinput_before_after.png``.

    python examples/lung_mask_before_after.py [scan.nrrd] [out.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from radiolab.io import read_volume  # noqa: E402
from radiolab.lung import LungMaskSettings, lung_mask, settings_for  # noqa: E402
from radiolab.lung_segmentation import segment_lungs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    scan = Path(argv[0]) if argv else ROOT / "tests/data/cip/TestInput.nrrd"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs/img/lung_testinput_before_after.png"
    volume = read_volume(scan)
    spacing, direction = volume.geometry.spacing, volume.geometry.direction
    import radiolab.lung as lung

    lung.PRESETS["before"] = LungMaskSettings()  # the former default: closings of both lungs
    before = lung_mask(volume.array, spacing, preset="before")
    after = segment_lungs(volume.array, spacing, settings_for("default"), direction=direction)
    slices = [int(z) for z in np.linspace(0, volume.array.shape[0] - 1, 7)[1:-1]]
    fig, axes = plt.subplots(2, len(slices) + 1, figsize=(3 * (len(slices) + 1), 6.4))
    aspect = spacing[0] / spacing[2]
    for row, (title, sides, airways) in enumerate((
            ("before", before.astype(np.uint8), None), ("after", after.sides, after.airways))):
        views = [(volume.array[z], sides[z], None if airways is None else airways[z], f"{title}: slice {z}", 1.0)
                 for z in slices]
        mid = volume.array.shape[1] // 2 + 4
        views.append((volume.array[:, mid], sides[:, mid], None if airways is None else airways[:, mid],
                      f"{title}: coronal", aspect))
        for ax, (image, label, air, name, ratio) in zip(axes[row], views):
            overlay = np.zeros(image.shape + (4,))
            overlay[label == 1] = (0.9, 0.2, 0.2, 0.45)
            overlay[label == 2] = (0.2, 0.4, 0.95, 0.45)
            if air is not None:
                overlay[air] = (0.1, 0.9, 0.1, 0.8)
            origin = "lower" if ratio != 1.0 else "upper"
            ax.imshow(image, cmap="gray", vmin=-1000, vmax=300, origin=origin, aspect=ratio)
            ax.imshow(overlay, origin=origin, aspect=ratio)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{scan.name}: before (one mask, both lungs closed together) and after "
                 "(red right, blue left, green airways)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
