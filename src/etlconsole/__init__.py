"""etlconsole: a crash-safe, Arrow-streamed CSV ETL engine with a terminal console."""

from .engine.phases.base import Option, Phase, PhaseResult, Rejects

__version__ = "0.1.0"
__all__ = ["Option", "Phase", "PhaseResult", "Rejects", "__version__"]
