"""etlconsole: a crash-safe, Arrow-streamed CSV ETL engine with a terminal console.

The stable plugin and library surface: the phase contract (``Phase``, ``PhaseResult``,
``Rejects``, ``Option``), the context a ``when`` predicate receives
(``ConditionContext``), and the builder (``PipelineBuilder``). Importing this package
stays light (no console, no Textual), and the names load on first use (PEP 562): the
``etlconsole`` program starts before any of them is imported (``__main__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .builder import PipelineBuilder
    from .engine.conditions import ConditionContext
    from .engine.phases.base import Option, Phase, PhaseResult, Rejects

__version__ = "0.1.0"
__all__ = ["ConditionContext", "Option", "Phase", "PhaseResult", "PipelineBuilder", "Rejects",
           "__version__"]

_WHERE = {"PipelineBuilder": ".builder", "ConditionContext": ".engine.conditions",
          "Option": ".engine.phases.base", "Phase": ".engine.phases.base",
          "PhaseResult": ".engine.phases.base", "Rejects": ".engine.phases.base"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'etlconsole' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
