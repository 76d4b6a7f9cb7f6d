"""Shared helpers of the reliability suite (issue 16): every test is a scenario a careless or hostile user tried,
run through the command line as the user runs it (typer's CliRunner: in-process, so no torch start-up per test),
on copies of the shipped default model (so that nothing inside the package is ever written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fpqvar
from fpqvar.cli import app

ASSETS = Path(fpqvar.__file__).resolve().parent / "assets"
# a tiny, fast evaluation on the real default model: 2 classes x 2 images, one unit per class
EVAL_SMALL = ["eval", "--classes", "0,1", "--per-class", "2", "--batch", "2", "--top-k", "20", "--calib-samples",
              "2", "--no-figures", "--no-progress"]


def cli(*args) -> tuple[int, str]:
    """(exit code, stdout + stderr) of ``fpqvar ARGS``; torch's thread count is restored afterwards (--threads)."""
    threads = torch.get_num_threads()
    try:
        r = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    out = r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(r.exception))
    return r.exit_code, out


def assert_clean_error(code: int, out: str, *needles: str) -> None:
    """A user error: exit code 2, an ``error:`` line, no Python traceback, every needle in the message."""
    assert code == 2, f"exit code {code}, expected 2 (a clean user error):\n{out}"
    assert "Traceback" not in out, out
    assert "error:" in out, out
    for n in needles:
        assert n in out, f"{n!r} not in the message:\n{out}"


@pytest.fixture(scope="session")
def default_assets():
    from fpqvar.model.default import default_paths

    try:
        return default_paths(check=True)
    except FileNotFoundError as e:
        pytest.skip(f"default model assets missing: {e}")


@pytest.fixture
def weights(tmp_path, default_assets):
    """Copies of the default model's VAR and VQVAE files: (var, vae)."""
    var, vae = tmp_path / "var.safetensors", tmp_path / "vqvae.safetensors"
    shutil.copyfile(default_assets.var, var)
    shutil.copyfile(default_assets.vae, vae)
    return var, vae


@pytest.fixture
def probe_in_assets():
    """A path inside the package's assets that must never be created; removed if a broken guard created it."""
    created: list[Path] = []

    def make(name: str) -> Path:
        p = ASSETS / "default" / name
        assert not p.exists(), f"{p} exists before the test"
        created.append(p)
        return p

    yield make
    for p in created:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
