"""The ``etlconsole`` program (``python -m etlconsole`` too): the CLI imported with the
collector paused and its objects frozen (``startup``), then run."""

from __future__ import annotations

from .startup import collector_paused


def entry() -> None:
    with collector_paused(freeze=True):
        from .cli import entry as cli_entry
    cli_entry()


if __name__ == "__main__":
    entry()
