"""The Feast feature repository of hitl-gate, generated from each domain's declaration.

Importing the package is cheap; only `features.definitions` (and the store functions, when
called) import Feast. See `features/README.md`.
"""
