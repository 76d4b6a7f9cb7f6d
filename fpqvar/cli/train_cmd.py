"""``fpqvar train vqvae|var|classifier``: train the embedded default model (needs the [train] extra)."""

from __future__ import annotations

from pathlib import Path

import typer

from fpqvar.cli.common import check_outputs


def _loop(steps, batch_size, lr, seed, warmup, ckpt_every):
    from fpqvar import kernels
    from fpqvar.train.loop import LoopConfig

    kernels.apply_default_threads(0)  # measured thread count (autocast "auto" is measured at that count)

    return LoopConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup_steps=warmup,
                      ckpt_every=ckpt_every)


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train the embedded default model (resumable; needs the 'train' extra: mlxtend).",
                            no_args_is_help=True)

    @train_app.command("vqvae")
    def vqvae(out: Path = typer.Option(Path("runs/vqvae"), help="run folder (resumes from out/state.pt)"),
              steps: int = 1500, batch_size: int = 64, lr: float = 3e-4, seed: int = 0, warmup: int = 100,
              ckpt_every: int = 100) -> None:
        """Multi-scale VQVAE on the bundled digits."""
        check_outputs({"--out": out}, folders=("--out",))
        from fpqvar.model.checkpoints import save_state_dict
        from fpqvar.train.vqvae import train_vqvae

        vae, log = train_vqvae(out, _loop(steps, batch_size, lr, seed, warmup, ckpt_every))
        save_state_dict(vae, out / "vqvae.safetensors")
        typer.echo(f"final: {log[-1] if log else 'no new steps'}; weights -> {out / 'vqvae.safetensors'}")

    @train_app.command("var")
    def var(vae: Path = typer.Option(..., help="trained VQVAE weights (.safetensors)"),
            out: Path = typer.Option(Path("runs/var")), steps: int = 3000, batch_size: int = 64, lr: float = 4e-4,
            seed: int = 0, warmup: int = 200, ckpt_every: int = 100,
            shifts: str = typer.Option(
                "12", help="augmentation shift ids 0..24: (dy, dx) = (id//5-2, id%5-2); 12 = none")) -> None:
        """Class-conditional VAR on the VQVAE's tokens."""
        check_outputs({"--out": out}, {"--vae": vae}, folders=("--out",))
        from fpqvar.model import build_vqvae
        from fpqvar.model.checkpoints import load_vqvae_weights, save_state_dict
        from fpqvar.model.zoo import DEFAULT_VAE
        from fpqvar.train.var import train_var

        v = load_vqvae_weights(build_vqvae(DEFAULT_VAE), vae)
        model, log = train_var(v, out, _loop(steps, batch_size, lr, seed, warmup, ckpt_every),
                               shifts=tuple(int(s) for s in shifts.split(",")))
        save_state_dict(model, out / "var.safetensors")
        typer.echo(f"final: {log[-1] if log else 'no new steps'}; weights -> {out / 'var.safetensors'}")

    @train_app.command("classifier")
    def classifier(out: Path = typer.Option(Path("runs/classifier")), steps: int = 600, batch_size: int = 128,
                   lr: float = 2e-3, seed: int = 0, warmup: int = 50, ckpt_every: int = 100) -> None:
        """Digit classifier for the domain metrics."""
        check_outputs({"--out": out}, folders=("--out",))
        from fpqvar.model.checkpoints import save_state_dict
        from fpqvar.train.classifier import train_classifier

        net, log, acc = train_classifier(out, _loop(steps, batch_size, lr, seed, warmup, ckpt_every))
        save_state_dict(net, out / "classifier.safetensors")
        typer.echo(f"held-out accuracy {acc:.4f}; weights -> {out / 'classifier.safetensors'}")

    app.add_typer(train_app, name="train")
