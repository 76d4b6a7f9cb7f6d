"""Measured areas of our own RTL units for the performance model: a cache of Yosys results, read by default.

The model sizes its PE arrays and units from LUT / FF counts that Yosys measured on the Verilog of
``fpqvar.hw.rtl`` (``fpqvar.hw.synth``, flow ``synth_xilinx -family xcup -nodsp -noiopad -flatten``). Synthesis of
a 128-lane PE takes about a minute, so the counts are cached in a JSON file with the Yosys version, the flow and
the SHA-256 of the unit's Verilog; the package ships one (``area_cache.json``, written by
``fpqvar hw perf --refresh-areas``). Lookups never synthesize unless asked:

- a unit in the cache -> its measured counts (``AreaLookup.measured`` True, ``source`` names Yosys and the file);
- a unit not cached, or not (yet) an RTL unit -> ``None`` counts with the reason, and the caller falls back to
  its formula and says so (``source`` starts with "formula (fallback: ...)").

``stale_units`` re-generates the Verilog and compares hashes (slow: Amaranth export, ~15 s for the PEs).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fpqvar.io_utils import atomic_write_json

AREA_CACHE_VERSION = 1
SHIPPED_CACHE = Path(__file__).with_name("area_cache.json")

# Model role -> RTL unit names to try, first hit wins; a role with no cached unit falls back to its formula.
ROLE_UNITS: dict[str, tuple[str, ...]] = {
    "pe_e2m1": ("pe_fp4",),
    "pe_dfq": ("pe_dfq",),
    "pe_int4_twos": ("pe_int4",),
    "pe_int4_sm": ("pe_int4_sym",),
    "fht128": ("fht128",),
    "quant_lane": ("quant_e2m1",),  # the compare stage of one lane; the front end (absmax, scale) is formula
    "fp4_mul": ("fp4_mul",),
    "dfq_mul": ("dfq_mul",),
    "int4_mul": ("int4_mul",),
}


@dataclass(frozen=True)
class AreaLookup:
    """One role's counts: measured (from the cache) or None with the reason the caller must fall back."""

    role: str
    unit: str | None
    luts: float | None
    ffs: float | None
    source: str

    @property
    def measured(self) -> bool:
        return self.luts is not None


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"version": AREA_CACHE_VERSION, "units": {}}
    except json.JSONDecodeError as e:
        raise ValueError(f"area cache {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("units"), dict):
        raise ValueError(f"area cache {path}: expected an object with a 'units' object")
    if data.get("version") != AREA_CACHE_VERSION:
        raise ValueError(f"area cache {path}: version {data.get('version')!r} not supported ({AREA_CACHE_VERSION})")
    for name, row in data["units"].items():
        for key in ("luts", "ffs", "yosys_version", "flow", "verilog_sha256"):
            if key not in row:
                raise ValueError(f"area cache {path}: unit {name!r} lacks {key!r}")
    return data


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> dict:  # keyed on mtime: a refreshed file is re-read
    return _read_cache(Path(path))


def default_cache_path() -> Path:
    """``$FPQVAR_AREA_CACHE`` if set (``fpqvar hw perf --refresh-areas`` sets it for its own run), else the
    cache shipped with the package."""
    env = os.environ.get("FPQVAR_AREA_CACHE")
    return Path(env) if env else SHIPPED_CACHE


def load_cache(path: str | Path | None = None) -> dict:
    p = Path(path) if path is not None else default_cache_path()
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        return {"version": AREA_CACHE_VERSION, "units": {}}
    return _cached(str(p), mtime)


def lookup(role: str, cache_path: str | Path | None = None) -> AreaLookup:
    """Measured counts of the first cached unit for ``role`` (see ``ROLE_UNITS``), else None + the reason."""
    try:
        names = ROLE_UNITS[role]
    except KeyError:
        raise ValueError(f"areas.lookup: unknown role {role!r}; known: {', '.join(ROLE_UNITS)}") from None
    path = default_cache_path() if cache_path is None else Path(cache_path)
    units = load_cache(path)["units"]
    for name in names:
        row = units.get(name)
        if row is not None:
            return AreaLookup(role, name, float(row["luts"]), float(row["ffs"]),
                              f"measured: {name}, {row['yosys_version'].split(' (')[0]} {row['flow']}, "
                              f"Verilog sha256 {row['verilog_sha256'][:12]} ({path.name})")
    known = _rtl_units()
    present = [n for n in names if n in known]
    why = (f"{'/'.join(present)} not in the area cache {path.name} (fpqvar hw perf --refresh-areas)" if present
           else f"no RTL unit {'/'.join(names)} yet")
    return AreaLookup(role, None, None, None, why)


def _rtl_units() -> set[str]:
    try:
        from fpqvar.hw.rtl.units import UNITS  # light: the registry imports Amaranth lazily
    except ImportError:
        return set()
    return set(UNITS)


def _verilog_sha(unit: str) -> str:
    from fpqvar.hw.rtl.units import unit_verilog

    return hashlib.sha256(unit_verilog(unit).encode()).hexdigest()


def refresh(path: str | Path, units: tuple[str, ...] | None = None, progress=None) -> dict:
    """Synthesize ``units`` (default: every unit named in ``ROLE_UNITS`` that exists in ``fpqvar.hw.rtl``) and
    write the cache to ``path`` atomically, keeping other entries. Needs Yosys and Amaranth."""
    from fpqvar.hw import synth

    wanted = units or tuple(dict.fromkeys(n for names in ROLE_UNITS.values() for n in names if n in _rtl_units()))
    data = _read_cache(Path(path))
    version = synth.yosys_version()
    for unit in wanted:
        if progress is not None:
            progress(unit)
        from fpqvar.hw.rtl.units import unit_verilog

        verilog = unit_verilog(unit)
        r = synth.synthesize_verilog(verilog, unit)
        data["units"][unit] = {"luts": r.luts, "ffs": r.ffs, "carry": r.carry, "muxf": r.muxf, "dsp": r.dsp,
                               "yosys_version": version, "flow": r.flow,
                               "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest()}
    data["version"] = AREA_CACHE_VERSION
    atomic_write_json(path, data)
    return data


def stale_units(path: str | Path | None = None) -> list[str]:
    """Cached units whose Verilog no longer hashes to the cached SHA-256 (or no longer exists)."""
    units = load_cache(path)["units"]
    known = _rtl_units()
    return [u for u, row in units.items() if u not in known or _verilog_sha(u) != row["verilog_sha256"]]
