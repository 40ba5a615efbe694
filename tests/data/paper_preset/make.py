"""Make the paper-preset regression fixture (``tests/data/paper_preset/*.npz``).

The stored arrays were made once, with the radiolab of commit 8472b8a (before any
change to the lung mask or the phantoms of the real-data work), by::

    mkdir /tmp/radiolab-8472b8a
    git archive 8472b8a | tar -x -C /tmp/radiolab-8472b8a
    PYTHONPATH=/tmp/radiolab-8472b8a python tests/data/paper_preset/make.py

(the script writes next to itself, so run the copy in your checkout; only the radiolab
package it imports comes from 8472b8a).

For every case below, the volume comes from the frozen generator
``tests/frozen_phantom.py`` (a verbatim copy of ``radiolab/synthetic.py`` at 8472b8a),
optionally cropped; then ``lung_mask(volume, spacing, preset="zaffino2021", **overrides)``
(fast backend), ``label_tissue`` with the published mixture ``models/zaffino2021.json``
and ``median_labels`` (4-voxel window). ``<case>.npz`` holds ``mask`` (bool), ``labels``
and ``median`` (uint8), written with ``numpy.savez_compressed``; ``volumes.json`` the
SHA-256 of every case's volume.

Case ``paper_exact`` runs the preset unchanged (islands of 5e5 voxels, closing balls of
30 and 20 voxels): its lungs are cut from a 200 x 320 x 320 phantom so that they pass the
paper's island size. The smaller cases scale the voxel-unit sizes down, as
``tests/test_lung.py`` does, to cover other spacings, seeds and lesion loads quickly.

Rerunning this script with later code must not be used to "refresh" the fixture: the
point of the fixture is that it records what 8472b8a computed. The volumes depend on
numpy's random streams (``default_rng``, ``standard_normal``) and scipy's filters; the
arrays were made with numpy 2.4.6, scipy 1.17.1 and SimpleITK 2.5.7. Should a future
numpy change those streams, the test fails on the volumes, not on the lung mask:
``test_paper_preset.py`` checks a digest of each regenerated volume first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# name: generator arguments, crop (z, y, x) as (start, stop) index pairs or None,
# lung_mask overrides in the preset's voxel units.
CASES: dict[str, dict] = {
    "paper_exact": dict(
        shape=(200, 320, 320), spacing=(1.6, 1.1, 1.1), lesion_fraction=0.2, noise_hu=25.0, seed=1,
        crop=((63, 193), (83, 237), (46, 275)), overrides={},
    ),
    "small_5mm": dict(
        shape=(64, 96, 96), spacing=(5.0, 3.5, 3.5), lesion_fraction=0.2, noise_hu=25.0, seed=3,
        crop=None, overrides=dict(min_island=2000, closing_radii=(6, 4)),
    ),
    "anisotropic_7mm": dict(
        shape=(48, 80, 96), spacing=(7.0, 4.0, 3.5), lesion_fraction=0.35, noise_hu=35.0, seed=7,
        crop=None, overrides=dict(min_island=1000, opening=2, closing_radii=(5, 3)),
    ),
    "lesion_free_offcentre": dict(
        shape=(40, 64, 64), spacing=(7.0, 5.0, 5.0), lesion_fraction=0.0, noise_hu=15.0, seed=5,
        crop=((4, 40), (6, 60), (0, 50)), overrides=dict(min_island=500, opening=1, closing_radii=(4, 2)),
    ),
}


def case_volume(name: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The HU volume and spacing (mm) of a case, from the frozen generator."""
    sys.path.insert(0, str(HERE.parents[1]))
    try:
        from frozen_phantom import chest_phantom
    finally:
        sys.path.pop(0)
    case = CASES[name]
    phantom = chest_phantom(case["shape"], case["spacing"], lesion_fraction=case["lesion_fraction"],
                            noise_hu=case["noise_hu"], seed=case["seed"])
    volume = phantom.volume
    if case["crop"] is not None:
        volume = volume[tuple(slice(a, b) for a, b in case["crop"])]
    return volume, tuple(float(s) for s in case["spacing"])


def case_arrays(name: str) -> dict[str, np.ndarray]:
    """Mask, labels and median of a case, computed by the installed radiolab."""
    from radiolab.lung import lung_mask
    from radiolab.mixture import label_tissue, load_mixture
    from radiolab.smoothing import median_labels

    volume, spacing = case_volume(name)
    mask = lung_mask(volume, spacing, preset="zaffino2021", **CASES[name]["overrides"])
    labels = label_tissue(volume, mask, load_mixture("zaffino2021"))
    return {"mask": mask, "labels": labels, "median": median_labels(labels)}


def volume_digest(name: str) -> str:
    """SHA-256 of a case's int16 volume bytes (C order)."""
    import hashlib

    volume, _ = case_volume(name)
    return hashlib.sha256(np.ascontiguousarray(volume, dtype=np.int16).tobytes()).hexdigest()


def write_volume_digests() -> None:
    """``volumes.json``: the digest, shape and spacing of every case's volume.

    It depends on the frozen generator only (not on radiolab's lung mask), so it was
    added after the arrays, from the same generator.
    """
    import json

    record = {}
    for name in CASES:
        volume, spacing = case_volume(name)
        record[name] = {"sha256": volume_digest(name), "shape": list(volume.shape), "spacing_mm": list(spacing)}
    (HERE / "volumes.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    for name in CASES:
        arrays = case_arrays(name)
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
        print(name, arrays["mask"].shape, int(arrays["mask"].sum()), "mask voxels")
    write_volume_digests()


if __name__ == "__main__":
    main()
