"""skops, the models' file format, imported before the large libraries by processes that need it.

skops' import lists the types it trusts by default, and finds the module of each of about 840
of them that names none (numpy's and scipy's ufuncs) by walking `sys.modules` in import order
(`skops.io._utils.whichmodule`): its cost grows with every module loaded before it. Imported
after scikit-learn alone (about 1,500 modules) that walk took 0.16 s of CPU; after the code
location, Great Expectations, Feast and MLflow (about 4,900) 1.06 s, and over 3 s in a test
worker holding more. A process that will train or load a model anyway (training logs it with
skops, scoring loads it) imports skops first, so the walk meets few modules and finds numpy's
and scipy's early. A process that may not need it does not import it for that: skops brings
scikit-learn and SciPy (about 1.8 s of CPU in all).
"""

from __future__ import annotations

from importlib import import_module

MODEL_FORMAT_MODULE = "skops.io"  # first in every preload list that holds it


def import_model_format() -> None:
    """Import skops now (see the module docstring); nothing when it is loaded already."""
    import_module(MODEL_FORMAT_MODULE)
