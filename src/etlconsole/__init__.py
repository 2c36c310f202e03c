"""etlconsole: a crash-safe, Arrow-streamed CSV ETL engine with a terminal console.

The stable plugin and library surface: the phase contract (``Phase``, ``PhaseResult``,
``Rejects``, ``Option``), the context a ``when`` predicate receives
(``ConditionContext``), and the builder (``PipelineBuilder``). Importing this package
stays light (no console, no Textual).
"""

from .builder import PipelineBuilder
from .engine.conditions import ConditionContext
from .engine.phases.base import Option, Phase, PhaseResult, Rejects

__version__ = "0.1.0"
__all__ = ["ConditionContext", "Option", "Phase", "PhaseResult", "PipelineBuilder", "Rejects",
           "__version__"]
