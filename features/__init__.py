"""The Feast feature repository of hitl-gate, generated from each domain's declaration.

Importing the package is cheap; only `features.definitions` (and the store functions, when
called) import Feast. See `features/README.md`. Feast's run-time type checks are instrumented
through a cache from here on (`features/typeguard_cache.py`: 3 s of CPU per process otherwise).
"""

from features.typeguard_cache import install

install()
