"""One exception family for every user-facing failure.

Each error carries a one-line message meant for the user; the CLI prints it as
``error: <message>`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations


class LatnasError(Exception):
    """Base class: a user-facing failure with a one-line message."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UnknownNameError(LatnasError):
    """An op, space, backend, predictor or algorithm name that is not registered."""


class ShapeError(LatnasError):
    """A block or model configuration whose shapes cannot work."""


class StoreError(LatnasError):
    """A profile store that is corrupt, foreign or otherwise unusable."""


class BackendUnavailable(LatnasError):
    """A profiler backend whose runtime or hardware is missing here."""


class PredictorFileError(LatnasError):
    """A predictor file that is corrupt, unsafe or does not match its use."""


class DataError(LatnasError):
    """An input table, dataset path or arch string that cannot be used."""


class ExportError(LatnasError):
    """A module that cannot be exported, lowered, built or loaded for a runtime (one-line reason)."""


class NothingSucceeded(LatnasError):
    """A run whose every item failed (e.g. `profile` where no block could be measured): exit 1, not 2."""

    exit_code = 1


class ExecutorUnavailable(LatnasError):
    """An executor whose engine is missing or cannot start (e.g. Ray not installed)."""
