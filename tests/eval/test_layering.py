"""The package layers of shared/design.md, read from the import statements (every level, function-local ones
included): eval and train never import each other; data imports no other fpqvar package."""

import ast
from pathlib import Path

import fpqvar

ROOT = Path(fpqvar.__file__).resolve().parent


def _imported_packages(package: str) -> set[str]:
    out = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            out |= {n.split(".")[1] for n in names if n.startswith("fpqvar.")}
    return out - {package}


def test_train_and_eval_do_not_import_each_other():
    assert "train" not in _imported_packages("eval")
    assert "eval" not in _imported_packages("train")


def test_data_is_a_low_layer():
    assert _imported_packages("data") <= {"io_utils"}
    assert not {"eval", "train", "cli", "quant"} & _imported_packages("model")
