"""The Feast feature repository of hitl-gate, generated from each domain's declaration.

Importing the package is cheap; only `features.definitions` (and the store functions, when
called) import Feast. See `features/README.md`. Feast is imported without typeguard's
instrumentation of its classes (`runtime_checks.py`: 2.6 s of CPU per process).
"""

from features.runtime_checks import skip_feast_instrumentation

skip_feast_instrumentation()
