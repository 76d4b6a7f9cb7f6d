"""Power model: static power plus dynamic energy per event on each resource.

energy_joules = static_watts * latency_s + sum over event kinds of (event count * joules per event).
Events are counted by the schedule (MACs per unit and precision, SFU element-passes, GHT butterfly add/subs,
quantized elements, on-chip and off-chip bytes). Every per-event energy is an assumption: hardware.md section 2
says "Energy per op, LUT vs DSP: unknown". The defaults are orders of magnitude from ASIC literature (Horowitz,
ISSCC 2014, 45 nm) scaled to 7 nm and multiplied by a typical FPGA fabric overhead; they are not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.hw.perf.config import HW_VERSION, F, _positive

ASSUMED = "assumption (order of magnitude, not a VCK190 measurement)"


@dataclass(frozen=True)
class PowerModel:
    """Energy per event on each resource, and static power."""

    static_watts: float = F(5.0, "W", "assumption: XCVC1902 device static power; board power excluded")
    fmu_mac_joules: float = F(0.3e-12, "J/MAC", ASSUMED + ": FP4 LUT multiply + adder-tree share")
    dfq_mac_joules: float = F(0.4e-12, "J/MAC", ASSUMED + ": two multiplier sets, two adder trees")
    dsp_int8_mac_joules: float = F(0.35e-12, "J/MAC", ASSUMED + ": one DSP58 cycle (~1 pJ) / 3 MACs")
    dsp_int4_mac_joules: float = F(0.35e-12, "J/MAC", ASSUMED + ": same DSP cycle, same 3 MACs")
    dsp_fp16_mac_joules: float = F(1.5e-12, "J/MAC", ASSUMED + ": one DSPFP32 FMA")
    sfu_op_joules: float = F(1.0e-12, "J/element-pass", ASSUMED)
    ght_add_joules: float = F(0.05e-12, "J/add", ASSUMED + ": 8-16-bit LUT adder")
    quant_elem_joules: float = F(0.3e-12, "J/element", ASSUMED + ": absmax + 7-8 comparisons")
    sram_byte_joules: float = F(1.0e-12, "J/byte", ASSUMED + ": BRAM/URAM access")
    dram_byte_joules: float = F(160e-12, "J/byte", ASSUMED + ": DDR4 ~20 pJ/bit incl. I/O")
    lpddr4_byte_joules: float = F(80e-12, "J/byte", ASSUMED + ": LPDDR4 ~10 pJ/bit incl. I/O (lower I/O voltage "
                                  "than DDR4)")
    lut_int4_mac_joules: float = F(0.3e-12, "J/MAC", ASSUMED + ": an INT4 LUT lane, as an FP4 LUT lane (similar "
                                   "LUTs per lane)")
    aie_int8_mac_joules: float = F(0.1e-12, "J/MAC", ASSUMED + ": a 7 nm vector MAC without fabric routing")
    aie_active_watts: float = F(10.0, "W", ASSUMED + ": AI-Engine array clock tree and memories while in use")
    version: int = HW_VERSION

    def __post_init__(self) -> None:
        _positive(self, "dram_byte_joules")
        for name in ("static_watts", "fmu_mac_joules", "dfq_mac_joules", "dsp_int8_mac_joules",
                     "dsp_int4_mac_joules", "dsp_fp16_mac_joules", "sfu_op_joules", "ght_add_joules",
                     "quant_elem_joules", "sram_byte_joules", "lpddr4_byte_joules", "lut_int4_mac_joules",
                     "aie_int8_mac_joules", "aie_active_watts"):
            if getattr(self, name) < 0:
                raise ValueError(f"PowerModel.{name} must be >= 0, got {getattr(self, name)}")

    def joules_per_event(self, event: str) -> float:
        """Event names: mac:fmu, mac:dfq, mac:lut_int4, mac:aie:int8, mac:dsp:int8|int4|fp16, sfu, ght, quant,
        sram_bytes, dram_bytes (= dram_bytes:ddr4), dram_bytes:lpddr4."""
        table = {"mac:fmu": self.fmu_mac_joules, "mac:dfq": self.dfq_mac_joules,
                 "mac:dsp:int8": self.dsp_int8_mac_joules, "mac:dsp:int4": self.dsp_int4_mac_joules,
                 "mac:dsp:fp16": self.dsp_fp16_mac_joules, "sfu": self.sfu_op_joules,
                 "ght": self.ght_add_joules, "quant": self.quant_elem_joules,
                 "mac:lut_int4": self.lut_int4_mac_joules,
                 "mac:aie:int8": self.aie_int8_mac_joules,
                 "sram_bytes": self.sram_byte_joules, "dram_bytes": self.dram_byte_joules,
                 "dram_bytes:ddr4": self.dram_byte_joules, "dram_bytes:lpddr4": self.lpddr4_byte_joules}
        try:
            return table[event]
        except KeyError:
            raise ValueError(f"PowerModel: unknown event {event!r}; known: {sorted(table)}") from None


def energy_breakdown_joules(events: dict[str, float], latency_s: float, power: PowerModel) -> dict[str, float]:
    """Per event kind: count * joules per event; ``static``: static_watts * latency_s. Sum = energy."""
    if latency_s < 0:
        raise ValueError(f"energy_breakdown_joules: latency_s must be >= 0, got {latency_s}")
    out = {"static": power.static_watts * latency_s}
    for ev, count in events.items():
        out[ev] = count * power.joules_per_event(ev)
    return out


def energy_joules(events: dict[str, float], latency_s: float, power: PowerModel) -> float:
    return sum(energy_breakdown_joules(events, latency_s, power).values())
