"""Built-in backends. Each module registers its backend(s) on import.

Every module is imported on its own, so a backend whose module is missing or
whose optional dependency fails to import never breaks the others (it is just
not listed; the reason is kept in ``IMPORT_ERRORS``).
"""
from __future__ import annotations

import importlib
import logging

logger = logging.getLogger(__name__)

BACKEND_MODULES = (
    "profilers.backends.torch_cpu",
    "profilers.backends.onnxruntime",
    "profilers.backends.executorch",
    "profilers.backends.torch_cuda",
    "profilers.backends.tensorrt",
    "profilers.backends.table",
    "profilers.remote.backend",
)
IMPORT_ERRORS: dict[str, str] = {}


def _load(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        IMPORT_ERRORS[name] = f"{exc}"
        if exc.name != name:  # the module exists but one of its imports is missing
            logger.debug("backend module %s not loaded: %s", name, exc)
    except Exception as exc:  # a broken optional runtime must not break the others
        IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}"
        logger.warning("backend module %s failed to import: %s", name, exc)


for _name in BACKEND_MODULES:
    _load(_name)
