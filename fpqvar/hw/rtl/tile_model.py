"""The GEMM tile's configuration and its closed-form cycle count (no Amaranth import: ``fpqvar.hw.perf`` reads
it). The RTL is :mod:`fpqvar.hw.rtl.tile`; the tile tests check this formula against simulation, cycle for
cycle.

Schedule of one layer ``y = x w^T + b`` (``tokens`` x ``in_features`` -> ``out_features``), with the input
streams never idle and the output stream always ready (``tile_cycles``'s assumptions):

1. ``start`` (cycle 0) -> load the activations: ``tokens * groups`` beats, one per cycle;
2. per pass (``out_features / n_pe`` of them; PE ``j`` of pass ``p`` computes output ``p * n_pe + j``):
   load the weights, ``n_pe * (groups + 1)`` beats (each PE's groups, then its bias), then issue
   ``tokens * groups`` (token, group) reads of the activation buffer, one per cycle, to all PEs at once, then
   wait ``drain_cycles`` for the pass's last results (the next pass overwrites the weights and biases);
3. the last result leaves the output FIFO on the cycle after the last drain cycle (the FIFO's write-to-read
   register).

Counting cycle 0 (``start``) to the last output beat's handshake, inclusive:

    cycles = 1 + T*G + P * (n_pe*(G + 1) + T*G + drain_cycles) + 1

with ``drain_cycles = 1 (buffer read) + pe_latency (1 + log2 lanes) + scale_acc_latency (4)``: after a pass's
last issue, its last result is registered by the scale-and-accumulate unit's output stage exactly then.
Loads and compute do not overlap (single-buffered weights); that is this tile's design,
not a claim about the accelerator, whose model (``fpqvar.hw.perf``) may overlap them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TileConfig", "TILE_KINDS", "SCALE_ACC_LATENCY_CYCLES", "check_layer", "tile_cycles"]

SCALE_ACC_LATENCY_CYCLES = 4  # fpqvar.hw.rtl.scale_acc with bias: scale product, partial, accumulator, bias
TILE_KINDS = ("fp4",)


@dataclass(frozen=True)
class TileConfig:
    """A GEMM tile: ``n_pe`` dot-product PEs of ``lanes`` lanes (one quantization group per PE pass), an
    activation buffer of ``max_tokens * max_groups`` group beats, a weight buffer of ``max_groups`` beats per
    PE, and an output FIFO of ``fifo_depth`` beats (``n_pe`` float32 results each)."""

    n_pe: int = 4
    lanes: int = 128
    max_tokens: int = 64
    max_groups: int = 8
    max_passes: int = 4096
    fifo_depth: int = 32
    kind: str = "fp4"
    version: int = 1

    def __post_init__(self) -> None:
        for f in ("n_pe", "max_tokens", "max_groups", "max_passes", "fifo_depth"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TileConfig.{f} must be a positive integer, got {v!r}")
        if self.lanes < 2 or self.lanes & (self.lanes - 1):
            raise ValueError(f"TileConfig.lanes must be a power of two >= 2, got {self.lanes!r}")
        if self.kind not in TILE_KINDS:
            raise ValueError(f"TileConfig.kind must be one of {TILE_KINDS}, got {self.kind!r}")
        # full rate never stalls on credit: every result in flight has a FIFO slot reserved
        if self.fifo_depth < self.drain_cycles + 1:
            raise ValueError(f"TileConfig.fifo_depth must be >= drain_cycles + 1 = {self.drain_cycles + 1}, "
                             f"got {self.fifo_depth}")

    @property
    def pe_latency_cycles(self) -> int:
        return 1 + (self.lanes.bit_length() - 1)  # product register + one register per tree level

    @property
    def drain_cycles(self) -> int:
        return 1 + self.pe_latency_cycles + SCALE_ACC_LATENCY_CYCLES

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TileConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"TileConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


def check_layer(cfg: TileConfig, tokens: int, in_features: int, out_features: int) -> tuple[int, int]:
    """``(groups, passes)`` of a layer on ``cfg``; errors name the dimension that does not fit."""
    if not 1 <= tokens <= cfg.max_tokens:
        raise ValueError(f"tokens={tokens} must be in 1..max_tokens={cfg.max_tokens}")
    if in_features % cfg.lanes or not 1 <= in_features // cfg.lanes <= cfg.max_groups:
        raise ValueError(f"in_features={in_features} must be a multiple of lanes={cfg.lanes}, "
                         f"at most {cfg.max_groups} groups")
    if out_features % cfg.n_pe or not 1 <= out_features // cfg.n_pe <= cfg.max_passes:
        raise ValueError(f"out_features={out_features} must be a multiple of n_pe={cfg.n_pe}, "
                         f"at most {cfg.max_passes} passes")
    return in_features // cfg.lanes, out_features // cfg.n_pe


def tile_cycles(cfg: TileConfig, tokens: int, in_features: int, out_features: int) -> int:
    """Cycles from ``start`` to the last output beat (inclusive), full-rate streams (module docstring)."""
    g, p = check_layer(cfg, tokens, in_features, out_features)
    t = tokens
    return 1 + t * g + p * (cfg.n_pe * (g + 1) + t * g + cfg.drain_cycles) + 1
