"""``fpqvar sample``: class-conditional images from a float or quantized VAR, as a grid PNG and/or single PNGs."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fpqvar.cli.common import (
    check_device,
    check_outputs,
    check_positive,
    check_seed,
    choose,
    fail,
    parse_classes,
    print_json,
)
from fpqvar.model.zoo import MODELS

_DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("reference", "exact", "compile", "triton")


def load_float_model(name: str, ckpt: Path | None, vae: Path | None, device: str):
    """The named float model; ``ckpt`` / ``vae`` override its weight files."""
    from fpqvar.model import load_model

    return load_model(name, ckpt=ckpt, vae_ckpt=vae, device=device)


def load_vae(name: str, vae: Path | None, device: str):
    """Only the named model's VQVAE (for a quantized file, which holds everything else)."""
    from fpqvar.model import load_vqvae

    return load_vqvae(name, vae_ckpt=vae, device=device)


def load_quantized_for(name: str, path: Path, vae: Path | None, device: str):
    """A quantized file checked against the named model's config, with that model's VQVAE."""
    from fpqvar.model.zoo import get_model_spec
    from fpqvar.quant.export import QuantFileError, read_header
    from fpqvar.quant.load import config_diff, load_quantized

    header = read_header(path)
    want = get_model_spec(name).var.to_dict()
    got = dict(header["model_config"])
    got.setdefault("attn_l2_norm", want["attn_l2_norm"])
    diff = [d for d in config_diff("model_config", got, want) if "attn_l2_norm" not in d]
    if diff:
        raise QuantFileError(f"{path}: was made for another model than --model {name}: " + "; ".join(diff))
    return load_quantized(path, vae=load_vae(name, vae, device), device=device)


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @app.command("sample")
    def sample(
        model: str = typer.Option("default", help="Model name (default, var-d16 ... var-d36)."),
        ckpt: Path = typer.Option(None, help="VAR weights (.pth / .safetensors) instead of the named model's."),
        vae: Path = typer.Option(None, help="VQVAE weights instead of the named model's."),
        quantized: Path = typer.Option(None, help="A file from `fpqvar quantize` (packed low-bit weights)."),
        classes: str = typer.Option("0,1,2,3", help="Class labels, e.g. 207,360,387 or 0-9."),
        seed: int = typer.Option(0, help="Sampling seed (one generator for the whole batch)."),
        cfg: float = typer.Option(1.5, help="Classifier-free guidance strength."),
        top_k: int = typer.Option(900, "--top-k"),
        top_p: float = typer.Option(0.96, "--top-p"),
        dtype: str = typer.Option("float32", help=f"Compute dtype: {', '.join(_DTYPES)} (autocast; auto: bfloat16 "
                                  "only where it measures faster than float32 on this machine). float32 by "
                                  "default: the same images on every machine."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
        backend: str = typer.Option("reference", help="QuantLinear backend for --quantized (reference or a "
                                    "fast path: exact, compile, triton)."),
        out: Path = typer.Option(None, help="Grid PNG to write."),
        out_dir: Path = typer.Option(None, help="Folder for one PNG per image (<index>_class<c>.png)."),
        nrow: int = typer.Option(8, help="Images per grid row."),
        as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
        threads: int = typer.Option(0, help="CPU threads for torch (0: measured, 1 vs all CPUs of this process)."),
    ) -> None:
        """Sample class-conditional images (KV cache, CFG, top-k / top-p)."""
        if out is None and out_dir is None:
            fail("give --out grid.png and/or --out-dir DIR")
        model = choose(model, MODELS, "--model")
        dtype = choose(dtype, _DTYPES, "--dtype")
        backend = choose(backend, BACKENDS, "--backend")
        check_seed(seed)
        check_positive(nrow, "--nrow")
        device = check_device(device)
        if quantized is not None and ckpt is not None:
            fail("--quantized holds the VAR weights: do not pass --ckpt with it")
        check_outputs({"--out": out, "--out-dir": out_dir}, {"--ckpt": ckpt, "--vae": vae, "--quantized": quantized},
                      folders=("--out-dir",))
        try:
            labels = parse_classes(classes, MODELS[model].var.num_classes)
        except ValueError as e:
            fail(str(e))

        from fpqvar import kernels

        kernels.apply_default_threads(threads)

        from fpqvar.eval.grid import make_grid, save_png, to_uint8_hwc
        from fpqvar.model.sampling import decode_images, sample_tokens

        try:
            if quantized is not None:
                var = load_quantized_for(model, quantized, vae, device)
                if backend != "reference":
                    from fpqvar.quant.quantize import set_backend

                    set_backend(var, backend)
            else:
                var = load_float_model(model, ckpt, vae, device)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
        t0 = time.perf_counter()
        try:
            tdt = kernels.resolve_dtype("autocast", dtype, device)
        except ValueError as e:
            fail(f"--dtype {dtype}: {e}")
        res = sample_tokens(var, len(labels), labels, seed=seed, cfg=cfg, top_k=top_k, top_p=top_p, dtype=tdt)
        imgs = decode_images(var, res.f_hat, tdt)
        seconds = time.perf_counter() - t0
        written = []
        if out is not None:
            written.append(str(save_png(out, make_grid(imgs, nrow=nrow))))
        if out_dir is not None:
            tiles = to_uint8_hwc(imgs)
            for i, (c, t) in enumerate(zip(labels, tiles)):
                written.append(str(save_png(Path(out_dir) / f"{i:05d}_class{c}.png", t)))
        info = {"model": model, "quantized": None if quantized is None else str(quantized), "classes": labels,
                "seed": seed, "cfg": cfg, "top_k": top_k, "top_p": top_p, "dtype": str(tdt).replace("torch.", ""),
                "dtype_requested": dtype, "device": device, "seconds": seconds, "written": written,
                "kernels": kernels.selection_report()}
        if as_json:
            print_json(info)
        else:
            typer.echo(f"{len(labels)} images in {seconds:.2f} s -> {', '.join(written[:3])}"
                       + (f" (+{len(written) - 3} more)" if len(written) > 3 else ""))
