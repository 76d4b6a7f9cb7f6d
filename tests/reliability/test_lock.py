"""Issue 16.8: two ``fpqvar eval`` on one --out: the second stops at once with a message naming the first one's PID
(before: it started, and its start-up clean-up could delete the first run's temp file mid-write); a lock left by a
killed run (its PID gone) is taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli

LOCK = ".fpqvar.lock"


def _env():
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def test_second_eval_on_the_same_out_is_refused_naming_the_holder(tmp_path, default_assets):
    out = tmp_path / "o"
    # the first run: long enough (10 classes x 10 images) to still be sampling when the second one starts
    first = subprocess.Popen([sys.executable, "-m", "fpqvar", "eval", "--recipes", "fp16", "--per-class", "10",
                              "--batch", "1", "--threads", "1", "--no-figures", "--no-progress", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), text=True)
    try:
        deadline = time.monotonic() + 120
        units = out / "fp16" / "units"
        while not (units.is_dir() and any(units.glob("*.npz"))):  # sampling has begun
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the first run did not start sampling within 120 s"
            time.sleep(0.2)
        code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--per-class", "10", "--batch", "1", "--threads", "1",
                         "--out", out)
        assert first.poll() is None, "the first run ended before the second was tried: the test proves nothing"
        assert_clean_error(code, text, str(first.pid))
    finally:
        first.kill()
        first.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, default_assets):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID is gone now
    out = tmp_path / "o"
    out.mkdir()
    (out / LOCK).write_text(f'{{"pid": {dead.pid}, "host": "{os.uname().nodename}", "started": 0}}\n')
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--out", out)
    assert code == 0, text
    assert not (out / LOCK).exists()  # released at the end
