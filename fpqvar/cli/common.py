"""Small helpers shared by the command modules: JSON output and user-facing errors."""

from __future__ import annotations

import json
from typing import Any

import typer

from fpqvar.io_utils import json_default


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit non-zero (no traceback for user errors)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=json_default))
