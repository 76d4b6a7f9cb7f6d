"""``fpqvar doctor``: what this machine offers and which kernel every operation would use here (issue 12)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import typer

from fpqvar.cli.common import fail, print_json


def _module_version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - importable but without metadata
        return "present"


def optional_tools() -> dict:
    """Presence (and version / path) of the optional tools; nothing is downloaded or installed."""
    import torch

    from fpqvar.eval.inception import default_weights_path
    from fpqvar.hw.synth import find_yosys
    from fpqvar.model.default import default_paths
    from fpqvar.model.zoo import MODELS

    yosys = find_yosys()
    ckpt_dir = Path(os.environ.get("FPQVAR_CKPT_DIR", "checkpoints"))
    files = sorted({f for m in MODELS.values() for f in (m.var_ckpt, m.vae_ckpt) if f})
    dflt = default_paths(check=False)
    triton = _module_version("triton")
    from fpqvar.kernels import native

    return {
        "c_compiler": native.compiler(),  # builds the few-row path's C kernels (fpqvar.kernels.native)
        # the instruction set of their integer dot products (the GEMM "native"), or why they cannot run
        "native_kernels": native.unavailable() or native.ISA_NAMES[native.isa()],
        "yosys": None if yosys is None else " ".join(yosys),
        "iverilog": shutil.which("iverilog"),
        "verilator": shutil.which("verilator"),
        "cocotb": _module_version("cocotb"),
        "amaranth": _module_version("amaranth"),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else None,
        "triton": triton,
        "inception_weights": {"path": str(default_weights_path()), "present": default_weights_path().is_file()},
        "default_model_assets": {str(p.name): p.is_file() for p in (dflt.var, dflt.vae, dflt.classifier,
                                                                    dflt.reference_stats)},
        "official_checkpoints": {"dir": str(ckpt_dir.resolve()),
                                 "present": {f: (ckpt_dir / f).is_file() for f in files}},
    }


def kernel_choices(devices: list[str]) -> list[dict]:
    """Every operation's choice on every device (measured now unless cached or set explicitly)."""
    from fpqvar import kernels
    from fpqvar.quant import fast_lean, kernels_gemm  # noqa: F401 - register the integer-GEMM and "lean" operations

    rows = []
    for dev in devices:
        for op in kernels.SELECTOR.base_operations():
            if op == "threads" and dev != "cpu":
                continue
            try:
                rows.append(kernels.choice(op, dev).to_dict())
            except ValueError as e:
                rows.append({"op": op, "device": dev, "name": None, "error": str(e)})
    return rows


def _fmt_times(row: dict) -> str:
    t = row.get("times_ms") or {}
    parts = [f"{k} {v:.2f} ms" for k, v in sorted(t.items(), key=lambda kv: kv[1])]
    parts += [f"{k}: {why}" for k, why in (row.get("dropped") or {}).items()]
    return "; ".join(parts)


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
        threads: int = typer.Option(0, help="CPU threads for torch (0: measured, as every command does)."),
    ) -> None:
        """The device, torch build, CPU capability, threads, optional tools, and the kernel chosen per operation."""
        import torch

        from fpqvar import kernels
        from fpqvar.kernels.env import machine_info

        try:
            how = kernels.apply_default_threads(threads)
        except ValueError as e:
            fail(str(e))
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        info = {"machine": machine_info(), "threads_choice": how, "tools": optional_tools(),
                "kernels": kernel_choices(devices), "selection": kernels.selection_report()}
        if as_json:
            print_json(info)
            return
        m = info["machine"]
        flags = ", ".join(k for k, v in m["cpu_flags"].items() if v) or "unknown"
        tb = m["torch_build"]
        typer.echo(f"CPU       {m['cpu_model']} ({m['affinity_cpus']} CPUs for this process)")
        typer.echo(f"          torch capability {m['cpu_capability']}; ISA flags: {flags}")
        if m["isa_env"]:
            typer.echo(f"          ISA caps from the environment: {m['isa_env']}")
        typer.echo(f"torch     {tb['version']} (CUDA build {tb['cuda_build']}, MKL {tb.get('mkl')}, oneDNN "
                   f"{tb.get('onednn')})")
        typer.echo(f"threads   {m['threads']} ({how['source']})")
        typer.echo("devices   cpu" + "".join(f", cuda: {d}" for d in m["cuda_devices"]))
        typer.echo("tools")
        for k, v in info["tools"].items():
            if isinstance(v, dict) and "present" in v and isinstance(v["present"], dict):
                have = [f for f, ok in v["present"].items() if ok]
                v = f"{len(have)}/{len(v['present'])} in {v['dir']}" + (f": {', '.join(have)}" if have else "")
            elif isinstance(v, dict) and "present" in v:
                v = f"{'present' if v['present'] else 'missing'} ({v['path']})"
            elif isinstance(v, dict):
                v = ", ".join(f"{f} {'ok' if ok else 'MISSING'}" for f, ok in v.items())
            typer.echo(f"  {k:<22} {v if v else 'not found'}")
        typer.echo("kernels (measured on this machine; FPQVAR_KERNELS=op=name overrides)")
        for r in info["kernels"]:
            if r.get("name") is None:
                typer.echo(f"  {r['op']:<12} {r['device']:<6} error: {r['error']}")
                continue
            typer.echo(f"  {r['op']:<12} {r['device']:<6} -> {r['name']:<9} [{r['source']}] {_fmt_times(r)}")
