"""Mutation check of the numeric core and the quantization engine (issue 13): which lines does no test defend?

Runs mutmut 3 in a scratch copy of the repository (never in the working tree), on the modules given (default:
the quantization harness and the format layer) against the tests that exercise them, and writes the surviving
mutants (with their diffs) to a report. Not part of the default test suite: it takes minutes per module.

    python tools/mutation.py [--paths fpqvar/quant/steps/rotation.py ...] [--tests tests/quant/test_quantize.py ...]
                             [--out mutation-report.md] [--max-children 2]

Needs ``pip install mutmut`` (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {
    "fpqvar/quant/steps/rotation.py": ["tests/quant/test_quantize.py"],
    "fpqvar/quant/steps/scaling.py": ["tests/quant/test_quantize.py"],
    "fpqvar/quant/recipe.py": ["tests/quant/test_spec_recipes.py", "tests/quant/test_quantize.py"],
    "fpqvar/quant/spec.py": ["tests/quant/test_spec_recipes.py"],
    "fpqvar/quant/operands.py": ["tests/quant/test_baselines.py"],
    "fpqvar/formats/scales.py": ["tests/formats"],
}


def _toml_list(xs) -> str:
    return "[" + ", ".join(f'"{x}"' for x in xs) + "]"


def run(paths: list[str], tests: list[str], max_children: int) -> tuple[str, str]:
    work = Path(tempfile.mkdtemp(prefix="fpqvar-mutation-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "repo")], check=True)
    repo = work / "repo"
    with open(repo / "pyproject.toml", "a") as f:
        f.write(f"\n[tool.mutmut]\nsource_paths = {_toml_list(paths)}\n"
                f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
                f'also_copy = ["fpqvar/", "tests/"]\n')
    env = {**os.environ, "FPQVAR_TEST_THREADS": "1"}  # mutmut puts its mutants/ copy first on sys.path
    subprocess.run(["mutmut", "run", "--max-children", str(max_children)], cwd=repo, env=env,
                   stdout=subprocess.DEVNULL)
    res = subprocess.run(["mutmut", "results", "--all", "true"], cwd=repo, env=env, capture_output=True, text=True)
    survivors = [ln.split(":")[0].strip() for ln in res.stdout.splitlines() if ln.strip().endswith("survived")]
    diffs = []
    for m in survivors:
        d = subprocess.run(["mutmut", "show", m], cwd=repo, env=env, capture_output=True, text=True).stdout
        diffs.append(f"### {m}\n```diff\n{d.strip()}\n```\n")
    shutil.rmtree(work, ignore_errors=True)
    return res.stdout, "\n".join(diffs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", nargs="*", default=None)
    ap.add_argument("--tests", nargs="*", default=None)
    ap.add_argument("--out", default="mutation-report.md")
    ap.add_argument("--max-children", type=int, default=2)
    a = ap.parse_args()
    if shutil.which("mutmut") is None:
        print("mutmut is not installed: pip install mutmut", file=sys.stderr)
        return 2
    groups = {p: DEFAULT.get(p, a.tests or ["tests"]) for p in a.paths} if a.paths else DEFAULT
    report = ["# Mutation report (mutmut)\n"]
    for path, tests in groups.items():
        summary, diffs = run([path], a.tests or tests, a.max_children)
        counts = {k: summary.count(f": {k}") for k in ("killed", "survived", "timeout", "no tests")}
        line = f"{path} (tests {' '.join(a.tests or tests)}): " + ", ".join(f"{k} {v}" for k, v in counts.items())
        print(line, flush=True)
        report += [f"## {line}\n", diffs or "no surviving mutants\n"]
    Path(a.out).write_text("\n".join(report))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
