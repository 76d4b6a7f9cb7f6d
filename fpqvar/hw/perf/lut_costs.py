"""LUT / FF cost of the PE kinds and units the model sizes: measured from our RTL by default, formula as fallback.

``measured_lut_costs()`` (what the named designs use) reads the Yosys counts of our own units from the area cache
(``areas.py``). A role with no measurement keeps its formula, and ``source`` / ``role_sources`` say so
("formula (fallback: ...)"). ``LutCosts()`` alone is the all-formula description (hardware.md section 6 parts).
PE kinds:

- ``e2m1``: 128 E2M1 x E2M1 sign-magnitude multipliers + one adder tree (``pe_fp4``);
- ``dfq``: 128 DFQ multipliers (the activation's sign selects E2M1 x E2M1 or E1M2 x E2M1) + two trees, one per
  sign, since each sign has its own scale (``pe_dfq``);
- ``unified``: a DFQ PE that also runs plain E2M1 layers: ``dfq`` + a mode select per lane (assumption);
- ``int4_sm`` / ``int4_twos``: 128 symmetric sign-magnitude / two's-complement INT4 multipliers + one tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fpqvar.hw.perf.config import HW_VERSION, F

SECTION6 = "given: hardware.md section 6 (Yosys 0.23 synth_xilinx -family xcup)"
PE_KINDS = ("e2m1", "dfq", "unified", "int4_sm", "int4_twos")
# PE kind -> (area role of areas.ROLE_UNITS, field of its measured dot-product LUTs, ... FFs)
_MEASURED = {"e2m1": ("pe_e2m1", "e2m1_pe_dot_luts", "e2m1_pe_dot_ffs"),
             "dfq": ("pe_dfq", "dfq_pe_dot_luts", "dfq_pe_dot_ffs"),
             "int4_sm": ("pe_int4_sm", "int4_sm_pe_dot_luts", "int4_sm_pe_dot_ffs"),
             "int4_twos": ("pe_int4_twos", "int4_twos_pe_dot_luts", "int4_twos_pe_dot_ffs")}
_MEASURED_LANES = 128  # the synthesized PEs are 128 lanes wide (fpqvar.hw.rtl.units)


def adder_tree_luts(lanes: int, in_bits: int, luts_per_bit: float) -> float:
    """LUTs of a binary adder tree over ``lanes`` inputs of ``in_bits`` bits.

    Formula: sum over levels j = 1..log2(lanes) of (lanes / 2^j) adders of (in_bits + j - 1) bits, each
    bit one LUT on the carry chain (``luts_per_bit``). 128 lanes of 9 bits: 1263 LUTs at 1 LUT per bit.
    """
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"adder_tree_luts: lanes must be a power of two, got {lanes}")
    levels = int(math.log2(lanes))
    return luts_per_bit * sum((lanes >> j) * (in_bits + j - 1) for j in range(1, levels + 1))


def adder_tree_ffs(lanes: int, in_bits: int) -> float:
    """Registers of a tree with a register after the products and after every level: lanes * in_bits +
    sum_j (lanes / 2^j) * (in_bits + j)."""
    levels = int(math.log2(lanes))
    return lanes * in_bits + sum((lanes >> j) * (in_bits + j) for j in range(1, levels + 1))


@dataclass(frozen=True)
class LutCosts:
    """Per-lane parts (formula) and, where measured, the synthesized 128-lane dot-product PEs (``*_pe_dot_*``:
    multipliers + pipelined tree(s), without the group scale-and-accumulate)."""

    e2m1_mult_luts: float = F(9.0, "LUT", SECTION6 + ": FP4xFP4 sign-magnitude multiplier")
    dfq_mult_luts: float = F(17.0, "LUT", SECTION6 + ": two sets per lane (paper summary): E2M1xE2M1 9 + "
                             "E1M2xE2M1 magnitude 7 + 1 select / sign")
    int4_sm_mult_luts: float = F(7.0, "LUT", "derived (hardware.md section 6 lesson): |a|,|b| <= 7, 6 product bits "
                                 "of 6 inputs each = 6 LUT6 + the sign XOR")
    int4_twos_mult_luts: float = F(26.0, "LUT", SECTION6 + ": arithmetic int4 x int4 = 26 LUTs (+14 MUXF, 2 CARRY4)")
    e2m1_product_bits: int = F(9, "bit", "derived: |E2M1 x E2M1| <= 36 = 144 quarter units, 8 bits + sign")
    dfq_product_bits: int = F(10, "bit", "derived: both DFQ products in 1/8 units, |p| <= 288: 9 bits + sign")
    int4_sm_product_bits: int = F(7, "bit", "derived: |p| <= 49, 6 bits + sign")
    int4_twos_product_bits: int = F(8, "bit", "derived: p in [-56, 64], 8-bit two's complement")
    unified_mode_luts_per_lane: float = F(9.0, "LUT", "assumption: a DFQ lane that also runs E2M1 x E2M1 on negative "
                                          "activations needs a mode select per product bit (9 bits + sign)")
    adder_luts_per_bit: float = F(1.0, "LUT/bit", "assumption: one LUT per sum bit on the carry chain")
    pe_overhead_luts: float = F(256.0, "LUT", "assumption: group scale-and-accumulate (in a DSP58) alignment, control")
    fht128_luts: float = F(9856.0, "LUT", SECTION6 + ": 128-pt 8-bit FWHT, 7 pipeline stages")
    fht128_ffs: float = F(10752.0, "FF", SECTION6 + ": 128-pt 8-bit FWHT, 10752 FDRE")
    quant_lane_luts: float = F(24.0, "LUT", "assumption: per element: |x| against the scaled midpoints (7-8 compares) "
                               "+ the absmax tree's share")
    e2m1_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (pe_fp4)")
    dfq_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (pe_dfq)")
    int4_sm_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (sign-magnitude INT4 PE)")
    int4_twos_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (pe_int4)")
    e2m1_pe_dot_ffs: float | None = F(None, "FF", "None: by formula; else measured (pe_fp4)")
    dfq_pe_dot_ffs: float | None = F(None, "FF", "None: by formula; else measured (pe_dfq)")
    int4_sm_pe_dot_ffs: float | None = F(None, "FF", "None: by formula; else measured")
    int4_twos_pe_dot_ffs: float | None = F(None, "FF", "None: by formula; else measured (pe_int4)")
    source: str = SECTION6
    role_sources: tuple[tuple[str, str], ...] = ()  # (role, "measured: ..." | "formula (fallback: ...)")
    version: int = HW_VERSION

    def _formula_luts(self, kind: str, lanes: int) -> float:
        if kind == "unified":
            return self.pe_luts("dfq", lanes) - self.pe_overhead_luts + lanes * self.unified_mode_luts_per_lane
        mult = getattr(self, f"{kind}_mult_luts")
        bits = getattr(self, f"{kind}_product_bits")
        trees = 2 if kind == "dfq" else 1
        return lanes * mult + trees * adder_tree_luts(lanes, bits, self.adder_luts_per_bit)

    def pe_luts(self, kind: str, lanes: int) -> float:
        """LUTs of one PE of ``kind``: the measured 128-lane dot product (or lanes x multiplier + tree(s) by
        formula) + the per-PE overhead."""
        if kind not in PE_KINDS:
            raise ValueError(f"LutCosts.pe_luts: unknown PE kind {kind!r}; known: {PE_KINDS}")
        if kind == "unified":
            return self._formula_luts(kind, lanes) + self.pe_overhead_luts
        measured = getattr(self, _MEASURED[kind][1])
        if measured is not None and lanes == _MEASURED_LANES:
            return measured + self.pe_overhead_luts
        return self._formula_luts(kind, lanes) + self.pe_overhead_luts

    def pe_ffs(self, kind: str, lanes: int) -> float:
        """FFs of one PE: measured, or the registered products and tree levels by formula."""
        base = "dfq" if kind == "unified" else kind
        measured = getattr(self, _MEASURED[base][2])
        if measured is not None and lanes == _MEASURED_LANES:
            return measured
        bits = getattr(self, f"{base}_product_bits")
        return (2 if base == "dfq" else 1) * adder_tree_ffs(lanes, bits)

    def e2m1_pe_luts(self, lanes: int) -> float:
        return self.pe_luts("e2m1", lanes)

    def dfq_pe_luts(self, lanes: int) -> float:
        return self.pe_luts("dfq", lanes)

    @classmethod
    def from_area_json(cls, data: dict, path: str = "<json>") -> "LutCosts":
        """Measured counts from ``fpqvar hw area --json`` (``{"rows": [{"unit": ..., "luts": ...}, ...]}``)
        or a plain ``{unit: luts}`` / ``{"units": {unit: luts or {"luts": n}}}`` object.

        Units read: ``fp4_mul`` -> e2m1_mult_luts, ``dfq_mul`` -> dfq_mult_luts, ``fht128`` -> fht128_luts,
        ``pe_fp4`` / ``pe_dfq`` / ``pe_int4`` -> the 128-lane PEs (other lane counts use the formula)."""
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        if isinstance(data.get("rows"), list):
            try:
                units = {r["unit"]: r["luts"] for r in data["rows"]}
            except (KeyError, TypeError):
                raise ValueError(f"{path}: every entry of 'rows' needs 'unit' and 'luts'") from None
        else:
            units = data.get("units", data)
        if not isinstance(units, dict):
            raise ValueError(f"{path}: 'units' must be an object of LUT counts, got {type(units).__name__}")
        names = {"fp4_mul": "e2m1_mult_luts", "dfq_mul": "dfq_mult_luts", "fht128": "fht128_luts",
                 "pe_fp4": "e2m1_pe_dot_luts", "pe_dfq": "dfq_pe_dot_luts", "pe_int4": "int4_twos_pe_dot_luts"}
        found = {}
        for key, fname in names.items():
            if key in units:
                v = units[key]
                v = v.get("luts") if isinstance(v, dict) else v
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ValueError(f"{path}: unit {key!r} must give a positive LUT count, got {v!r}")
                found[fname] = float(v)
        if not found:
            raise ValueError(f"{path}: none of the units {sorted(names)} found")
        return replace(cls(), source=f"measured: {path} ({', '.join(k for k in names if k in units)})", **found)


def measured_lut_costs(cache_path=None) -> LutCosts:
    """``LutCosts`` with every role the area cache has measured; the others keep the formula, labelled."""
    from fpqvar.hw.perf import areas

    changes: dict = {}
    sources: list[tuple[str, str]] = []
    base = LutCosts()
    for kind, (role, lut_field, ff_field) in _MEASURED.items():
        a = areas.lookup(role, cache_path)
        if a.measured:
            changes[lut_field], changes[ff_field] = a.luts, a.ffs
            sources.append((f"pe_{kind}", a.source))
        elif kind == "int4_sm" and "e2m1_pe_dot_luts" in changes:
            # same structure as pe_fp4 (sign-magnitude ROM products, sign applied in one tree): the formula scaled
            # by pe_fp4's measured / formula ratio, so that it is not compared unscaled with measured PEs
            lanes = _MEASURED_LANES
            r_lut = changes["e2m1_pe_dot_luts"] / base._formula_luts("e2m1", lanes)
            r_ff = changes["e2m1_pe_dot_ffs"] / base.pe_ffs("e2m1", lanes)
            changes[lut_field] = base._formula_luts(kind, lanes) * r_lut
            changes[ff_field] = base.pe_ffs(kind, lanes) * r_ff
            sources.append((f"pe_{kind}", f"formula x pe_fp4 measured/formula ({r_lut:.2f} LUT, {r_ff:.2f} FF) "
                                          f"(fallback: {a.source})"))
        else:
            sources.append((f"pe_{kind}", f"formula (fallback: {a.source})"))
    for role, field_luts, field_ffs in (("fht128", "fht128_luts", "fht128_ffs"),
                                        ("quant_lane", "quant_lane_luts", None)):
        a = areas.lookup(role, cache_path)
        if a.measured:
            changes[field_luts] = a.luts
            if field_ffs:
                changes[field_ffs] = a.ffs
            sources.append((role, a.source))
        else:
            sources.append((role, f"formula / given (fallback: {a.source})"))
    # the group scale-and-accumulate (pe_overhead_luts) stays the assumption: the model puts it in a DSP58, and
    # our scale_acc_fp4 is float32 in LUTs (the synthesis flow is -nodsp), another unit
    sources.append(("scale_acc", "formula / given (fallback: assumed in a DSP58; scale_acc_fp4 is float32 in LUTs "
                                 "(-nodsp), another unit)"))
    n = sum(1 for _, src in sources if src.startswith("measured"))
    summary = (f"measured by Yosys for {n} of {len(sources)} roles (" +
               ", ".join(r for r, src in sources if src.startswith("measured")) + "); formula for the rest")
    return replace(LutCosts(), source=summary if n else "formula (fallback: no measured unit in the area cache)",
                   role_sources=tuple(sources), **changes)
