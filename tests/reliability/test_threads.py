"""Issue 16.7: images depend on the CPU thread count (one uint8 level in a few pixels), so the thread count is part
of a sample set's identity: recorded in the manifest, settable with ``eval --threads``, and never mixed in a set."""

from __future__ import annotations

import json

from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli


def test_threads_recorded_and_mixing_refused(tmp_path):
    out = tmp_path / "o"
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--threads", "1", "--out", out)
    assert code == 0, text
    manifest = json.loads((out / "fp16" / "sample_set.json").read_text())
    assert manifest["config"]["threads"] == 1
    units_before = sorted(p.name for p in (out / "fp16" / "units").iterdir())
    (out / "fp16" / "metrics.json").unlink()  # an unfinished folder: a rerun would sample into it
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--threads", "2", "--out", out)
    assert_clean_error(code, text, "--threads 1")
    assert sorted(p.name for p in (out / "fp16" / "units").iterdir()) == units_before
