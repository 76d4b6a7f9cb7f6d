"""The embedded default model: where its shipped files live inside the package.

Weights are stored as float16 safetensors (loaded into float32 modules); every number in the model card was
measured on exactly these shipped weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class DefaultPaths:
    root: Path
    var: Path
    vae: Path
    classifier: Path
    reference_stats: Path
    card: Path


def default_paths(check: bool = True) -> DefaultPaths:
    root = Path(str(resources.files("fpqvar") / "assets" / "default"))
    p = DefaultPaths(root, root / "var.safetensors", root / "vqvae.safetensors", root / "classifier.safetensors",
                     root / "reference_stats.npz", root / "MODEL_CARD.md")
    if check:
        missing = [str(f) for f in (p.var, p.vae) if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"the embedded default model is missing from this installation: {missing}. "
                                    "Reinstall fpqvar from a complete checkout (the weights ship in "
                                    "fpqvar/assets/default/), or train it: see fpqvar/assets/default/MODEL_CARD.md")
    return p
