"""Off-chip memory as channels, and which tensors live where.

The VCK190 has two kinds of board memory (hardware.md section 2: an 8 GB DDR4 UDIMM and 8 GB of LPDDR4), each
behind its own integrated memory controllers, reached from the programmable logic through NoC ports. A channel's
usable bandwidth is

    effective = min(peak * efficiency, noc_ports * port_cap)

and channels work in parallel: a transfer of b_c bytes on each channel c takes max_c b_c / (effective_c / clock)
cycles. ``TensorPlacement`` fields say which channel holds each class of tensor; a design that does not use a channel
sets it to None and must not place anything there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fpqvar.hw.perf.config import F, _positive

NOC_PORT = "PG313 'Physical Link (Raw) Bandwidth': 16.0 GB/s read per NoC link at 1000 MHz (hardware.md section 2)"
EFFICIENCY = ("assumption: sequential streaming reads; Intel AN 1003 (Agilex 7 M EMIF) gives > 90 % for sequential "
              "DDR4 / LPDDR5 and > 60 % random; the Versal DDRMC's own figure is unknown")
TENSOR_CLASSES = ("linear_weights", "cond_weights", "kv_cache", "act_spill")


@dataclass(frozen=True)
class MemoryChannel:
    """One memory interface (a DIMM or a set of LPDDR4 channels) as the accelerator sees it."""

    name: str = "ddr4"
    peak_bandwidth_bytes_per_s: float = F(25.6e9, "byte/s", "DDR4-3200 x 64 bit = 3.2e9 transfers/s x 8 bytes "
                                          "(hardware.md section 2, arithmetic; the DIMM's speed grade is unknown)")
    peak_source: str = "DDR4-3200 x64 UDIMM (hardware.md section 2: 8 GB DDR4 UDIMM; 3200 MT/s assumed)"
    efficiency: float = F(0.9, "1", EFFICIENCY)
    efficiency_source: str = EFFICIENCY
    noc_ports: int = F(2, "port", "assumption: the PL reaches the controller through 2 NoC master units")
    port_cap_bytes_per_s: float = F(16.0e9, "byte/s", NOC_PORT)
    capacity_bytes: float = F(8 * 2**30, "byte", "UG1702 platforminfo: 8 GB DDR4 UDIMM (hardware.md section 2)")

    def __post_init__(self) -> None:
        _positive(self, "peak_bandwidth_bytes_per_s", "noc_ports", "port_cap_bytes_per_s", "capacity_bytes")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"MemoryChannel({self.name}).efficiency must be in (0, 1], got {self.efficiency}")

    @property
    def effective_bandwidth_bytes_per_s(self) -> float:
        """min(peak * efficiency, noc_ports * port_cap)."""
        return min(self.peak_bandwidth_bytes_per_s * self.efficiency, self.noc_ports * self.port_cap_bytes_per_s)


def ddr4_dimm() -> MemoryChannel:
    return MemoryChannel()


def lpddr4_pair() -> MemoryChannel:
    """Both LPDDR4 controllers: 4 x32 channels, interleaved by the NoC (UG1273: 2 or 4 DDRMCs interleave)."""
    return MemoryChannel(
        name="lpddr4", peak_bandwidth_bytes_per_s=62.5e9,
        peak_source="issue 15: 2 DDRMCs, 4 x32 LPDDR4 channels, ~62.5 GB/s peak (= 3906 MT/s x 16 bytes); UG1273: "
                    "the DDRMC runs LPDDR4 up to 4266 Mb/s; the board's data rate is not in our sources",
        noc_ports=4, capacity_bytes=8 * 2**30)


@dataclass(frozen=True)
class TensorPlacement:
    """Channel of each tensor class (a name of a channel of ``OffChip``)."""

    linear_weights: str = F("ddr4", "channel", "assumption: the 4-bit qkv / proj / fc1 / fc2 weights (0.66 GB for "
                            "var-d30) on the DDR4 DIMM")
    cond_weights: str = F("lpddr4", "channel", "assumption: the FP16 ada_lin / head / word_embed weights (1.33 GB "
                          "for var-d30, the largest stream) on the faster LPDDR4")
    kv_cache: str = F("lpddr4", "channel", "assumption: the KV cache on LPDDR4")
    act_spill: str = F("ddr4", "channel", "assumption: spilled activations on the DDR4 DIMM")


@dataclass(frozen=True)
class OffChip:
    """The channels a design uses and what lives where."""

    ddr4: MemoryChannel | None = field(default_factory=ddr4_dimm)
    lpddr4: MemoryChannel | None = field(default_factory=lpddr4_pair)
    placement: TensorPlacement = field(default_factory=TensorPlacement)

    def __post_init__(self) -> None:
        names = self.channel_names
        if not names:
            raise ValueError("OffChip: at least one of ddr4, lpddr4 must be set")
        for cls in TENSOR_CLASSES:
            ch = getattr(self.placement, cls)
            if ch not in names:
                raise ValueError(f"OffChip.placement.{cls} = {ch!r} but the design's channels are {names}")

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(n for n in ("ddr4", "lpddr4") if getattr(self, n) is not None)

    def channel(self, name: str) -> MemoryChannel:
        ch = getattr(self, name, None) if name in ("ddr4", "lpddr4") else None
        if ch is None:
            raise ValueError(f"OffChip: no channel {name!r}; the design's channels are {self.channel_names}")
        return ch

    def channel_of(self, tensor_class: str) -> str:
        if tensor_class not in TENSOR_CLASSES:
            raise ValueError(f"OffChip: unknown tensor class {tensor_class!r}; known: {TENSOR_CLASSES}")
        return getattr(self.placement, tensor_class)

    @property
    def total_bandwidth_bytes_per_s(self) -> float:
        return sum(self.channel(n).effective_bandwidth_bytes_per_s for n in self.channel_names)

    def bytes_per_cycle(self, clock_hz: float) -> dict[str, float]:
        return {n: self.channel(n).effective_bandwidth_bytes_per_s / clock_hz for n in self.channel_names}


def ddr4_only() -> OffChip:
    """The single-DIMM memory system of the issue-8 model (every tensor class on the DDR4 DIMM)."""
    return OffChip(lpddr4=None, placement=TensorPlacement("ddr4", "ddr4", "ddr4", "ddr4"))


def single_channel(bandwidth_bytes_per_s: float) -> OffChip:
    """One ideal channel of the given bandwidth (efficiency 1, enough NoC ports): for sweeps and tests."""
    ports = max(1, math.ceil(bandwidth_bytes_per_s / 16.0e9))
    ch = MemoryChannel(peak_bandwidth_bytes_per_s=bandwidth_bytes_per_s, peak_source="swept", efficiency=1.0,
                       efficiency_source="ideal (sweep)", noc_ports=ports)
    return OffChip(ddr4=ch, lpddr4=None, placement=TensorPlacement("ddr4", "ddr4", "ddr4", "ddr4"))


def transfer_cycles_by_channel(bytes_by_channel: dict[str, float], bytes_per_cycle: dict[str, float]) -> float:
    """Channels in parallel: max over channels of bytes / bytes per cycle (0 for no bytes)."""
    worst = 0.0
    for ch, b in bytes_by_channel.items():
        if b:
            try:
                worst = max(worst, b / bytes_per_cycle[ch])
            except KeyError:
                raise ValueError(f"transfer on channel {ch!r}, but the design has {sorted(bytes_per_cycle)}") from None
    return worst
