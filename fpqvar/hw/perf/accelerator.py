"""Whole-accelerator descriptions (the FPQVAR design and the integer baseline) and the GPU roofline.

Both FPGA designs share the board (memory, SFU, power model); they differ in their GEMM engines:
- ``fpqvar_vck190()``: LUT-based FP4 PE arrays (E2M1 GeMM + DFQ GeMM), a GHTU, and the remaining DSPs as an
  FP16 array for the operators FPQVAR keeps in FP16 (ada_lin, head, attention; fpqvar-method.md section 3).
- ``integer_vck190()``: a DSP-based accelerator (INT8 / INT4 modes, FP16 mode), no FMU, no GHTU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from fpqvar.hw.perf.energy import PowerModel
from fpqvar.hw.perf.hardware import (
    FMU,
    HW_VERSION,
    SFU,
    AIEArray,
    DSPArray,
    F,
    GHTUnit,
    Memory,
    Quantizer,
    _positive,
    from_dict,
    with_overrides,
)
from fpqvar.hw.perf.lut_costs import measured_lut_costs


@dataclass(frozen=True)
class Accelerator:
    """One FPGA accelerator: clock, GEMM engines, GHTU, quantizer, SFU, memory, power."""

    name: str = "fpqvar-vck190"
    clock_hz: float = F(400e6, "Hz", "assumption: the 400 MHz of LightMamba, the same lab's W4A4 VCK190 "
                        "design (hardware.md section 1); the FPQVAR clock is unknown")
    device_luts: int = F(899_840, "LUT", "hardware.md section 2 (secondary source; primary count unknown)")
    device_ffs: int = F(1_799_680, "FF", "hardware.md section 2: derived from 64 FF : 32 LUT per CLB (UG1273), "
                        "not sourced")
    fmu: FMU | None = field(default_factory=FMU)
    ghtu: GHTUnit | None = field(default_factory=GHTUnit)
    quantizer: Quantizer = field(default_factory=Quantizer)
    sfu: SFU = field(default_factory=SFU)
    dsp: DSPArray = field(default_factory=DSPArray)
    memory: Memory = field(default_factory=Memory)
    aie: AIEArray | None = None
    power: PowerModel = field(default_factory=PowerModel)
    version: int = HW_VERSION

    def __post_init__(self) -> None:
        _positive(self, "clock_hz", "device_luts")
        if self.luts_used > self.device_luts:
            raise ValueError(f"Accelerator {self.name!r}: FMU + GHTU + quantizer need {self.luts_used:.0f} LUTs, "
                             f"more than device_luts = {self.device_luts} (lower fmu.lut_budget_luts or fmu.*_pes)")
        if self.ffs_used > self.device_ffs:
            raise ValueError(f"Accelerator {self.name!r}: PE arrays + GHTU need {self.ffs_used:.0f} FFs, more than "
                             f"device_ffs = {self.device_ffs}")
        free = self.dsp.device_dsps - self.dsp.reserved_dsps - self.pe_dsps
        if self.dsp.gemm_dsps is not None and self.dsp.gemm_dsps > free:
            raise ValueError(f"Accelerator {self.name!r}: dsp.gemm_dsps = {self.dsp.gemm_dsps} but only {free} "
                             f"DSPs are free (device {self.dsp.device_dsps}, reserved "
                             f"{self.dsp.reserved_dsps}, PEs {self.pe_dsps})")
        if self.dsp_gemm_dsps < 1:
            raise ValueError(f"Accelerator {self.name!r}: no DSP left for the DSP array (device "
                             f"{self.dsp.device_dsps}, reserved {self.dsp.reserved_dsps}, PEs "
                             f"{self.pe_dsps}); lower fmu.dsps_per_pe or the PE count")

    @cached_property
    def e2m1_pes(self) -> int:
        return self.fmu.num_e2m1_pes if self.fmu else 0

    @cached_property
    def dfq_pes(self) -> int:
        return self.fmu.num_dfq_pes if self.fmu else 0

    @cached_property
    def pe_dsps(self) -> int:
        return (self.e2m1_pes + self.dfq_pes) * self.fmu.dsps_per_pe if self.fmu else 0

    @cached_property
    def dsp_gemm_dsps(self) -> int:
        """DSPs of the DSP GEMM array: ``dsp.gemm_dsps`` if set (must fit), else what the PEs' scale units and
        the SFU's reservation leave."""
        free = self.dsp.device_dsps - self.dsp.reserved_dsps - self.pe_dsps
        return free if self.dsp.gemm_dsps is None else self.dsp.gemm_dsps

    @cached_property
    def luts_used(self) -> float:
        """LUTs of the modelled compute units: PE arrays + GHTUs (a folded FHT of v < 1 vectors per cycle costs
        v x the 128-point unit: assumption) + quantizer lanes; SFU, control and I/O are not modelled."""
        if self.fmu is None:
            return 0.0
        c = self.fmu.costs
        ght = self.ghtu.units * min(1.0, self.ghtu.vectors_per_cycle) * c.fht128_luts if self.ghtu else 0.0
        return self.fmu.luts + ght + self.quantizer.lanes * c.quant_lane_luts

    @cached_property
    def ffs_used(self) -> float:
        """FFs of the PE arrays and GHTUs (measured where the area cache has them)."""
        if self.fmu is None:
            return 0.0
        ght = self.ghtu.units * min(1.0, self.ghtu.vectors_per_cycle) * self.fmu.costs.fht128_ffs if self.ghtu else 0.0
        return self.fmu.ffs + ght

    @cached_property
    def channel_bytes_per_cycle(self) -> dict[str, float]:
        """Effective bytes per PL cycle of each off-chip channel."""
        return self.memory.offchip.bytes_per_cycle(self.clock_hz)

    @cached_property
    def bytes_per_cycle(self) -> float:
        """All channels together (for reports; the cost model keeps channels apart)."""
        return self.memory.effective_bandwidth_bytes_per_s / self.clock_hz

    def with_overrides(self, overrides: dict) -> "Accelerator":
        return with_overrides(self, overrides)

    @classmethod
    def from_dict(cls, data: dict) -> "Accelerator":
        return from_dict(cls, data)


@dataclass(frozen=True)
class GPU:
    """A GPU as a roofline: per kernel max(FLOPs / peak, bytes / bandwidth) + a fixed launch overhead."""

    name: str = "RTX 4090 (assumed; the paper's GPU is unknown)"
    peak_flops_per_s: float = F(165.2e12, "FLOP/s", "NVIDIA Ada whitepaper: RTX 4090 FP16 tensor, FP32 "
                                "accumulate, dense; the GPU is assumed (LightMamba compared RTX 2070 / 4090)")
    bandwidth_bytes_per_s: float = F(1008e9, "byte/s", "RTX 4090 datasheet: 1008 GB/s GDDR6X")
    board_watts: float = F(450.0, "W", "RTX 4090 total graphics power; assumption: drawn while generating")
    kernel_overhead_s: float = F(5e-6, "s", "assumption: launch + synchronisation per kernel, batch 1")
    weight_bytes_per_elem: float = F(2.0, "byte", "FP16 weights, as upstream VAR samples (var-model.md 3.12)")
    version: int = HW_VERSION

    def __post_init__(self) -> None:
        _positive(self, "peak_flops_per_s", "bandwidth_bytes_per_s", "board_watts", "weight_bytes_per_elem")
        if self.kernel_overhead_s < 0:
            raise ValueError(f"GPU.kernel_overhead_s must be >= 0, got {self.kernel_overhead_s}")

    def with_overrides(self, overrides: dict) -> "GPU":
        return with_overrides(self, overrides)


def fpqvar_vck190() -> Accelerator:
    """The FPQVAR design with PE / FHT / quantizer areas measured by Yosys on our RTL (the area cache); roles the
    cache lacks keep their formula, and ``fmu.costs.source`` says which."""
    return Accelerator(fmu=FMU(costs=measured_lut_costs()))


def integer_vck190() -> Accelerator:
    """The integer baseline on the same board: every GEMM on the DSP58 array, no FMU, no GHTU."""
    return Accelerator(name="integer-vck190", fmu=None, ghtu=None)


def default_gpu() -> GPU:
    return GPU()
