"""A small resumable training loop shared by the VQVAE, VAR and classifier trainers.

State (model, optimizer, step, generator state, loss log) is saved atomically every ``ckpt_every`` steps to
``out_dir/state.pt``; a rerun resumes from it. Losses are appended to ``out_dir/log.jsonl``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from fpqvar import kernels
from fpqvar.io_utils import atomic_torch_save

_AUTOCAST = ("auto", "float32", "bfloat16", "float16")
# Keys a resumed run may change: the autocast dtype is a speed choice of the machine (a run may move to another
# one); "bf16" is its version-1 spelling.
_RESUMABLE_KEYS = ("steps", "autocast", "bf16", "version")


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 2.0
    seed: int = 0
    ckpt_every: int = 200
    log_every: int = 20
    # compute dtype (torch.autocast): "auto" = bfloat16 only where the kernel selector measured it faster than
    # float32 on this device (7x faster with AMX, 350x slower on AVX2-only CPUs: environment.md section 0)
    autocast: str = "auto"
    version: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"LoopConfig.steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"LoopConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"LoopConfig.lr must be > 0, got {self.lr}")
        if self.autocast not in _AUTOCAST:
            raise ValueError(f"LoopConfig.autocast must be one of {_AUTOCAST}, got {self.autocast!r}")

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def run_loop(model: torch.nn.Module, cfg: LoopConfig, out_dir: str | Path,
             step_fn: Callable[[torch.Generator], dict[str, torch.Tensor]], *, desc: str,
             on_step: Callable[[int, torch.Generator], None] | None = None) -> list[dict]:
    """Run ``step_fn(generator) -> {"loss": ..., other metrics}`` until cfg.steps, resumably."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out / "state.pt", out / "log.jsonl"
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        saved = {k: v for k, v in st["config"].items() if k not in _RESUMABLE_KEYS}
        if saved != {k: v for k, v in _cfg_dict(cfg).items() if k not in _RESUMABLE_KEYS}:
            raise ValueError(f"{state_path}: saved with a different training config; use a new --out dir")
        if st["config"]["steps"] != cfg.steps:  # extending / shortening a run only re-times the LR schedule
            tqdm.write(f"resuming with steps {st['config']['steps']} -> {cfg.steps}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        step = int(st["step"])
    log: list[dict] = []
    device = next(iter(params)).device if params else torch.device("cpu")
    dtype = kernels.resolve_dtype("autocast", cfg.autocast, device)
    tqdm.write(f"{desc}: autocast {str(dtype).replace('torch.', '')} on {device} (LoopConfig.autocast="
               f"{cfg.autocast!r})")
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            metrics = step_fn(gen)
        opt.zero_grad(set_to_none=True)
        metrics["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        if on_step is not None:
            on_step(step, gen)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "lr": cfg.lr_at(step - 1), "grad_norm": float(gnorm),
                   "elapsed_s": round(time.time() - t0, 1), **{k: float(v.detach()) for k, v in metrics.items()}}
            log.append(rec)
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k not in ("step", "elapsed_s", "lr")})
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            atomic_torch_save(state_path, {"model": model.state_dict(), "opt": opt.state_dict(),
                                           "gen": gen.get_state(), "step": step, "config": _cfg_dict(cfg)})
    bar.close()
    model.eval()
    return log


def _cfg_dict(cfg: LoopConfig) -> dict:
    d = asdict(cfg)
    d["betas"] = list(d["betas"])
    return d


def read_log(out_dir: str | Path) -> list[dict]:
    p = Path(out_dir) / "log.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.is_file() else []
