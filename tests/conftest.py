"""Test-wide settings: a fixed, small thread count (2-core machines shared with other work: oversubscribed
OpenMP threads spin and slow everything down). CI sets FPQVAR_TEST_THREADS=2."""

import os

import torch

torch.set_num_threads(int(os.environ.get("FPQVAR_TEST_THREADS", "1")))
# CLI commands run in-process choose their thread count (fpqvar.kernels.threads): keep the tests' count
os.environ.setdefault("FPQVAR_THREADS", os.environ.get("FPQVAR_TEST_THREADS", "1"))
