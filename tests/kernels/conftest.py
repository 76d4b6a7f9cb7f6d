"""Every test here starts and ends with a clean process-wide selector (no decision leaks between tests)."""

import pytest

from fpqvar import kernels


@pytest.fixture(autouse=True)
def fresh_selector(monkeypatch):
    for k in ("FPQVAR_KERNELS", "FPQVAR_KERNEL_HOOK", "FPQVAR_KERNEL_CACHE", "FPQVAR_THREADS"):
        monkeypatch.delenv(k, raising=False)
    kernels.reset()
    yield
    kernels.reset()
