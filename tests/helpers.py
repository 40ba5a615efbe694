"""Small helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path


def file_tree(folder: Path) -> dict[str, bytes]:
    """Every visible file's bytes, by name (hidden temporary files left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


# The pooled mixture published with Zaffino et al. (2021), as printed in the paper's
# public model: components air, healthy lung, GGO, consolidation, other dense tissue.
PAPER_MEANS_HU = (-950.35445, -828.9766504, -652.26530371, -337.03481411, -12.53896037)
PAPER_STDS_HU = (44.00749401, 58.42144763, 94.48375709, 156.67553717, 193.99477924)
PAPER_WEIGHTS = (0.33915991, 0.36163895, 0.13880557, 0.05467644, 0.10571913)


def paper_map_labels(hu):
    """MAP labels 1..5 of HU values under the paper's mixture, from scipy in float64."""
    import numpy as np
    from scipy import stats

    hu = np.asarray(hu, dtype=np.float64)
    log_post = np.stack([np.log(w) + stats.norm.logpdf(hu, m, s)
                         for w, m, s in zip(PAPER_WEIGHTS, PAPER_MEANS_HU, PAPER_STDS_HU)], axis=-1)
    return np.argmax(log_post, axis=-1) + 1
