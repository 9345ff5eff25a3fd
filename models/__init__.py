"""The model layer: train, register, load and score the champion scorecard.

Nothing is imported here on purpose: `mlflow` and `sklearn` cost seconds to import, and the
submodules load them only when a function that needs them runs.
"""
