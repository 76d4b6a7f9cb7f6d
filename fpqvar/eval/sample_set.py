"""Class-balanced sample sets: sharded over processes, resumable, packed in the ADM ``.npz`` layout.

Protocol (shared/spec/var-model.md section 5): ``per_class`` images for every class (ImageNet: 50 x 1000).

- Work unit = one fixed-size chunk of one class (``chunk_size`` images, the last chunk of a class may be
  smaller). Units are ordered by (class, chunk); rank r of a world of W processes does units u with
  ``u % W == r``. A unit is sampled as one batch with its own generator seeded by ``unit_seed`` (below), so
  its images depend only on (base seed, class, chunk, chunk_size, sampler settings, model), never on the
  number of processes or on which units were done before. Bit-identical images also need the same numerics per
  process: device type, dtype and, on CPU, threads per process (torchrun sets OMP_NUM_THREADS=1; a plain run
  with 2 threads was seen to differ by one uint8 level in one value of 12,288, from the decoder's kernels), so
  ``threads`` and ``device`` are part of the config: a folder is never filled by processes that disagree.
- Each finished unit is written atomically (temp file + rename, ``fpqvar.io_utils``) as
  ``units/c{class:05d}_k{chunk:04d}.npz`` (images, labels, seed, and the sampled token ids of every scale, for
  the token agreement with the float model: fpqvar.eval.paired) and kept. A rerun skips units whose file exists
  and validates (shape, dtype, labels, seed, tokens); a file that does not validate is reported and redone;
  temp files left by a kill are never read (their names start with '.', and rank 0 removes them at start; a run
  holds the folder's lock, fpqvar.io_utils.FolderLock, so no other run is writing one then).
- ``sample_set.json`` records the settings; a rerun with different settings into the same folder is refused.
- Packed set ``samples.npz``: ``arr_0`` (N, H, W, 3) uint8 and ``arr_1`` (N,) int64 labels, as guided-diffusion's
  sampler writes them (its evaluator reads ``arr_0``). Float -> uint8: ``floor(x * 255 + 0.5)`` clamped to
  [0, 255] (round half up), recorded as ``uint8_rounding`` (spec 5 prefers rounding to the demo's truncation).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from fpqvar.io_utils import atomic_write_json, atomic_write_with, load_npz
from fpqvar.model.sampling import decode_images, sample_tokens

SAMPLE_SET_VERSION = 2  # 2: units record the token ids; the config records threads and device
MANIFEST = "sample_set.json"
PACKED = "samples.npz"
UNITS_DIR = "units"
UINT8_ROUNDING = "floor(x*255+0.5) clamped to [0,255] (round half up)"
SEED_SCHEME = ("first 8 bytes (little endian) of sha256('fpqvar/sample-set/v1:{base_seed}:{class}:{chunk}'), "
               "masked to 63 bits")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def unit_seed(base_seed: int, cls: int, chunk: int) -> int:
    """The generator seed of unit (cls, chunk): see SEED_SCHEME (stable across Python versions and platforms)."""
    digest = hashlib.sha256(f"fpqvar/sample-set/v1:{base_seed}:{cls}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class Unit:
    index: int  # position in the global (class, chunk) order
    cls: int
    chunk: int
    n: int  # images in this unit
    seed: int

    @property
    def filename(self) -> str:
        return f"c{self.cls:05d}_k{self.chunk:04d}.npz"


@dataclass(frozen=True)
class SampleSetConfig:
    """What a sample set is: classes x per_class images with fixed chunking, seeds and sampler settings.

    ``model_id`` names the model and its quantization (set by the caller) so that a folder is never resumed
    with another model.
    """

    classes: tuple[int, ...]
    per_class: int = 50
    chunk_size: int = 25
    cfg: float = 1.5
    top_k: int = 900
    top_p: float = 0.96
    more_smooth: bool = False
    base_seed: int = 0
    dtype: str = "float32"
    model_id: str = ""
    threads: int = 1  # torch CPU threads per process (torch.get_num_threads()) while sampling
    device: str = "cpu"  # device type: cpu or cuda
    version: int = SAMPLE_SET_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if not self.classes:
            raise ValueError("SampleSetConfig.classes must not be empty")
        if any(c < 0 for c in self.classes) or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"SampleSetConfig.classes must be distinct non-negative ints, got {self.classes}")
        if self.per_class < 1:
            raise ValueError(f"SampleSetConfig.per_class must be >= 1, got {self.per_class}")
        if self.chunk_size < 1:
            raise ValueError(f"SampleSetConfig.chunk_size must be >= 1, got {self.chunk_size}")
        if self.cfg < 0:
            raise ValueError(f"SampleSetConfig.cfg must be >= 0, got {self.cfg}")
        if self.top_k < 0:
            raise ValueError(f"SampleSetConfig.top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"SampleSetConfig.top_p must be in [0, 1], got {self.top_p}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"SampleSetConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"SampleSetConfig.threads must be an int >= 1, got {self.threads!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"SampleSetConfig.device must be 'cpu' or 'cuda' (a device type), got {self.device!r}")
        if self.version != SAMPLE_SET_VERSION:
            raise ValueError(f"SampleSetConfig.version {self.version} is not supported (expected "
                             f"{SAMPLE_SET_VERSION})")

    @property
    def num_images(self) -> int:
        return len(self.classes) * self.per_class

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def units(self) -> list[Unit]:
        out: list[Unit] = []
        for cls in self.classes:
            for chunk, start in enumerate(range(0, self.per_class, self.chunk_size)):
                n = min(self.chunk_size, self.per_class - start)
                out.append(Unit(len(out), cls, chunk, n, unit_seed(self.base_seed, cls, chunk)))
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SampleSetConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"SampleSetConfig: unknown keys {unknown}")
        return cls(**d)


def shard(units: list[Unit], rank: int, world: int) -> list[Unit]:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard: need 0 <= rank < world, got rank={rank}, world={world}")
    return [u for u in units if u.index % world == rank]


def to_uint8_NHWC(img_B3HW: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (B, 3, H, W) -> (B, H, W, 3) uint8 with UINT8_ROUNDING."""
    x = (img_B3HW.detach().float().cpu() * 255 + 0.5).floor_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


# ----------------------------------------------------------------------------------------------- manifest
def _manifest_record(config: SampleSetConfig) -> dict:
    return {"config": config.to_dict(), "uint8_rounding": UINT8_ROUNDING, "seed_scheme": SEED_SCHEME,
            "layout": {"units": f"{UNITS_DIR}/c{{class:05d}}_k{{chunk:04d}}.npz (images NHWC uint8, labels, seed)",
                       "packed": f"{PACKED}: arr_0 (N, H, W, 3) uint8, arr_1 (N,) int64 labels, (class, chunk) order"}}


def config_mismatch(out_dir: str | os.PathLike, config: SampleSetConfig) -> str | None:
    """Why the folder's sample set is not ``config`` (None: no manifest yet, or the same settings)."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())["config"]
        if not isinstance(old, dict):
            raise TypeError("config is not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return f"{path}: not a sample-set manifest ({e}); remove it or use another --out"
    new = config.to_dict()
    if old.get("threads") != new["threads"] and old.get("version") == new["version"]:
        return (f"{out}: this sample set was sampled with {old.get('threads')} CPU thread(s) per process, this run "
                f"has {new['threads']}; images depend on the thread count (one uint8 level in a few pixels), so a "
                f"set is never mixed: rerun with --threads {old.get('threads')}, or use another --out")
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not diff:
        return None
    detail = ", ".join(f"{k}: folder {old.get(k)!r} vs now {new.get(k)!r}" for k in diff)
    return f"{out}: holds a sample set made with other settings ({detail}); use another --out or delete the folder"


def prepare_dir(out_dir: str | os.PathLike, config: SampleSetConfig, *, write: bool = True,
                provenance: dict | None = None) -> Path:
    """Create / check ``out_dir``: refuse a folder made with other settings; remove stray temp files.

    Call with ``write=True`` on one process only (rank 0, holding the folder lock), then ``write=False`` on the
    others after a barrier. ``provenance``: what produced the model (recorded in the manifest for the reader).
    """
    out = Path(out_dir)
    path = out / MANIFEST
    why = config_mismatch(out, config)
    if why is not None:
        raise ValueError(why)
    if not path.is_file():
        if not write:
            raise FileNotFoundError(f"{path}: manifest missing (rank 0 must prepare the folder first)")
        atomic_write_json(path, {**_manifest_record(config), "provenance": provenance})
    if write:
        (out / UNITS_DIR).mkdir(parents=True, exist_ok=True)
        for stray in (out / UNITS_DIR).glob(".*.tmp"):  # left by a killed writer; never read
            stray.unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------------------------------- units
def read_unit(path: Path, unit: Unit, image_hw: tuple[int, int] | None = None,
              num_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load and validate one unit file: (images (n, H, W, 3) uint8, labels (n,) int64, tokens (n, L) int64);
    ValueError naming the file and what is wrong."""
    try:
        z = load_npz(path, "unit file")
        images, labels, seed, tokens = z["images"], z["labels"], z["seed"], z["tokens"]
    except (ValueError, KeyError) as e:  # truncated / foreign file, missing key
        raise ValueError(f"{path}: unreadable unit file ({type(e).__name__}: {e})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != unit.n or images.shape[3] != 3:
        raise ValueError(f"{path}: images must be ({unit.n}, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if image_hw is not None and tuple(images.shape[1:3]) != tuple(image_hw):
        raise ValueError(f"{path}: image size {images.shape[1:3]} != expected {tuple(image_hw)}")
    if labels.shape != (unit.n,) or not np.all(labels == unit.cls):
        raise ValueError(f"{path}: labels must be {unit.n} x class {unit.cls}")
    if seed.shape != () or int(seed) != unit.seed:
        raise ValueError(f"{path}: seed {seed} != expected {unit.seed}")
    if tokens.ndim != 2 or tokens.shape[0] != unit.n or tokens.dtype.kind not in "iu" or (
            num_tokens is not None and tokens.shape[1] != num_tokens):
        raise ValueError(f"{path}: tokens must be ({unit.n}, {num_tokens or 'L'}) integers, got {tokens.shape} "
                         f"{tokens.dtype}")
    return images, labels.astype(np.int64), tokens.astype(np.int64)


def _write_unit(path: Path, images: np.ndarray, tokens: np.ndarray, unit: Unit) -> None:
    labels = np.full((unit.n,), unit.cls, dtype=np.int64)

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez must not append '.npz' to the temp name
            np.savez(f, images=images, labels=labels, seed=np.int64(unit.seed), tokens=tokens.astype(np.int32))

    atomic_write_with(path, w)


def sample_unit(var, unit: Unit, config: SampleSetConfig) -> tuple[np.ndarray, np.ndarray]:
    """One unit: images (n, H, W, 3) uint8 and the token ids of every scale, concatenated in scale order (n, L);
    one batch, one generator seeded with ``unit.seed``."""
    res = sample_tokens(var, unit.n, unit.cls, seed=unit.seed, cfg=config.cfg, top_k=config.top_k,
                        top_p=config.top_p, more_smooth=config.more_smooth, dtype=config.torch_dtype)
    tokens = torch.cat([t.reshape(unit.n, -1) for t in res.idx_list], dim=1).cpu().numpy()
    return to_uint8_NHWC(decode_images(var, res.f_hat, config.torch_dtype)), tokens


def generate_units(var, config: SampleSetConfig, out_dir: str | os.PathLike, *, rank: int = 0, world: int = 1,
                   progress: bool = True, max_units: int | None = None,
                   on_unit: Callable[[Unit], None] | None = None) -> dict:
    """Sample this rank's missing units. ``var``: the model, or a function building it (called only when a unit
    is missing or invalid). ``max_units`` stops after that many new units (time-boxed runs and kill simulation).
    Returns counts {done, skipped, redone, todo_left}."""
    units_dir = Path(out_dir) / UNITS_DIR
    mine = shard(config.units(), rank, world)
    lazy = callable(var) and not isinstance(var, torch.nn.Module)
    num_tokens = None if lazy else sum(p * p for p in var.patch_nums)  # lazy: pack() checks that units agree
    todo, skipped, redone = [], 0, 0
    for u in mine:
        path = units_dir / u.filename
        if path.is_file():
            try:
                read_unit(path, u, num_tokens=num_tokens)
                skipped += 1
                continue
            except ValueError as e:
                print(f"warning: redoing unit ({e})")
                redone += 1
        todo.append(u)
    budget = len(todo) if max_units is None else min(len(todo), max_units)
    if lazy and budget:
        var = var()
    bar = tqdm(total=sum(u.n for u in todo[:budget]), unit="img", desc=f"sample [rank {rank}/{world}]",
               disable=not progress, position=rank, leave=rank == 0)
    for u in todo[:budget]:
        images, tokens = sample_unit(var, u, config)
        _write_unit(units_dir / u.filename, images, tokens, u)
        bar.update(u.n)
        if on_unit is not None:
            on_unit(u)
    bar.close()
    return {"done": budget, "skipped": skipped, "redone": redone, "todo_left": len(todo) - budget}


def missing_units(config: SampleSetConfig, out_dir: str | os.PathLike) -> list[Unit]:
    units_dir = Path(out_dir) / UNITS_DIR
    return [u for u in config.units() if not (units_dir / u.filename).is_file()]


def pack(config: SampleSetConfig, out_dir: str | os.PathLike) -> Path:
    """Concatenate all units in (class, chunk) order into ``samples.npz`` (arr_0 images, arr_1 labels)."""
    out = Path(out_dir)
    missing = missing_units(config, out)
    if missing:
        names = ", ".join(u.filename for u in missing[:5])
        raise FileNotFoundError(f"{out / UNITS_DIR}: {len(missing)} unit(s) not sampled yet ({names}...); rerun "
                                f"the same command to finish them")
    images, labels, hw, L = [], [], None, None
    for u in config.units():
        im, lb, tk = read_unit(out / UNITS_DIR / u.filename, u, hw, L)
        hw, L = im.shape[1:3], tk.shape[1]
        images.append(im)
        labels.append(lb)
    arr_0, arr_1 = np.concatenate(images), np.concatenate(labels)

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, arr_0=arr_0, arr_1=arr_1)

    return atomic_write_with(out / PACKED, w)


def iter_units(config: SampleSetConfig, out_dir: str | os.PathLike):
    """(unit, images, labels, tokens) of every unit in the packed order (validated; for paired metrics)."""
    out = Path(out_dir)
    for u in config.units():
        yield (u, *read_unit(out / UNITS_DIR / u.filename, u))


def load_packed(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(images (N, H, W, 3) uint8, labels (N,) or None) from an ADM-layout npz; errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sample npz not found")
    z = load_npz(path, "sample npz")
    if "arr_0" not in z:
        raise ValueError(f"{path}: missing key 'arr_0' (keys: {sorted(z)})")
    images, labels = z["arr_0"], z.get("arr_1")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if labels is not None and labels.shape != images.shape[:1]:
        raise ValueError(f"{path}: arr_1 (labels) shape {labels.shape} does not match arr_0's {images.shape[:1]}")
    return images, labels
