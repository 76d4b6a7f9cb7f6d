"""Small helpers shared by the command modules: JSON output, user-facing errors, and the checks every command
runs on its flags before any work (names, class lists, seeds, devices, output paths)."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

import typer

from fpqvar.io_utils import OutputPathError, check_output_paths, json_default

# torch.Generator.manual_seed takes 64-bit values; seeds are kept non-negative and within int64 so that they mean
# the same on every path (per-unit seeds are derived from the base seed: fpqvar.eval.sample_set.unit_seed).
SEED_MAX = 2**63 - 1
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit non-zero (no traceback for user errors)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=json_default))


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def choose(value: str, choices: Iterable[str], flag: str, what: str = "name") -> str:
    """``value`` as spelled in ``choices``, with ``-`` and ``_`` (and case) interchangeable: ``--unit fp4-mul``
    is ``fp4_mul``, ``--model var_d16`` is ``var-d16``. Exits with the known names otherwise."""
    choices = list(choices)
    by_key = {_key(c): c for c in choices}
    hit = by_key.get(_key(value))
    if hit is None:
        fail(f"{flag}: unknown {what} {value!r}; known: {', '.join(choices)}")
    return hit


def choose_recipe(value: str, flag: str = "--recipe") -> str:
    """A named recipe (hyphen / underscore insensitive), or a path to a recipe JSON file as given."""
    from fpqvar.quant.recipes import recipe_names

    names = recipe_names()
    if value.endswith(".json") or "/" in value:
        return value
    by_key = {_key(n): n for n in names}
    return by_key.get(_key(value), value)  # an unknown name is reported by load_recipe, with the known ones


def parse_classes(text: str, num_classes: int | None = None, flag: str = "--classes") -> list[int]:
    """Class ids, the same meaning in every command: ``"207,360,387"``, ranges ``"0-9"``, or both (``"0,3,5-9"``);
    ``"3"`` is class 3. Checked against ``num_classes`` when given; duplicates are refused."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"{flag}: cannot parse {part!r} (class ids, e.g. 207,360,387 or 0-9)") from None
    if not out:
        raise ValueError(f"{flag}: no classes given")
    if len(set(out)) != len(out):
        raise ValueError(f"{flag}: class ids repeat in {text!r}")
    if num_classes is not None:
        bad = [c for c in out if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"{flag}: {bad[:5]} out of range 0..{num_classes - 1} for this model")
    return out


def check_seed(seed: int, flag: str = "--seed") -> int:
    if not 0 <= seed <= SEED_MAX:
        fail(f"{flag} must be in 0..{SEED_MAX} (2^63 - 1), got {seed}")
    return seed


def check_device(device: str, flag: str = "--device", allow_auto: bool = False) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` (and ``auto`` where the command picks); CUDA must be present when asked."""
    d = device.strip().lower()
    if not (_DEVICE_RE.match(d) or (allow_auto and d == "auto")):
        fail(f"{flag}: unknown device {device!r}; use cpu, cuda or cuda:N" + (" or auto" if allow_auto else ""))
    if d.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail(f"{flag} {device}: CUDA is not available on this machine")
        if ":" in d and int(d.split(":")[1]) >= torch.cuda.device_count():
            fail(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d


def check_positive(value: int, flag: str) -> int:
    if value < 1:
        fail(f"{flag} must be >= 1, got {value}")
    return value


def check_outputs(outputs: dict[str, Any], inputs: dict[str, Any] | None = None, *,
                  folders: tuple[str, ...] = ()) -> None:
    """``fpqvar.io_utils.check_output_paths`` as a clean CLI error (before any work)."""
    try:
        check_output_paths(outputs, inputs, folders=folders)
    except OutputPathError as e:
        fail(str(e))
