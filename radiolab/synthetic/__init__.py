"""Seeded synthetic chest-CT phantoms with ground truth.

- `chest_phantom` / `make_cohort` (``radiolab.synthetic.basic``): the small, fast phantom
  of the demo and of most tests (lungs far apart).
- `anatomical_phantom` (``radiolab.synthetic.chest``): an anatomical chest at any voxel
  size, with what real scans have (anterior junction line, trachea and bronchi joined to
  the lungs, gut gas, emphysema, subpleural consolidation, scanner padding), each with
  its own truth mask.
- `crop_phantom`, `reorient_phantom` (``radiolab.synthetic.phantom``): a smaller field of
  view, or other array orders and flips (feet-first), truths and geometry kept.
"""

from radiolab.synthetic.basic import chest_phantom, make_cohort
from radiolab.synthetic.chest import anatomical_phantom
from radiolab.synthetic.phantom import Phantom, crop_phantom, reorient_phantom

__all__ = ["Phantom", "anatomical_phantom", "chest_phantom", "crop_phantom", "make_cohort", "reorient_phantom"]
