"""Doctest collection of the package: modules of an extra that is not installed are left out.

These modules import torch at the top; the rest of radiolab.classify and its tests need
only numpy. The pytest header says what was left out and why.
"""

import importlib.util

TORCH_MODULES = ["radiolab/classify/cam.py", "radiolab/classify/models.py", "radiolab/classify/predict.py",
                 "radiolab/classify/train.py"]
MISSING = [name for name in ("torch", "monai") if importlib.util.find_spec(name) is None]
collect_ignore = TORCH_MODULES if MISSING else []


def pytest_report_header(config):
    if MISSING:
        return (f"doctests of {', '.join(TORCH_MODULES)} left out: the torch extra is not installed "
                f"(missing {', '.join(MISSING)}; pip install 'radiolab[torch]')")
    return None
