"""Reference statistics that samples are compared with.

(a) Domain reference of the embedded default model: DigitNet (fpqvar.model.digit_net) features of the 1,000-image
    held-out digit split, shipped as ``fpqvar/assets/default/reference_stats.npz`` so that metrics need no
    dataset at run time. These are DOMAIN metrics: not comparable to ImageNet FID.
(b) ADM reference batch for ImageNet models (``VIRTUAL_imagenet256_labeled.npz``, shared/spec/var-model.md 5):
    keys mu (2048,), sigma (2048, 2048), optional mu_s / sigma_s (spatial, for sFID) and arr_0 (reference images
    for precision / recall). Placed by hand; a missing file or key is an error naming it, never a fallback.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fpqvar.io_utils import atomic_write_with, load_npz
from fpqvar.model.checkpoints import check_tensors
from fpqvar.model.default import default_paths
from fpqvar.model.digit_net import DigitNet

REFERENCE_VERSION = 1
DOMAIN_LABEL = ("domain metrics (DigitNet features of the held-out digit split); not comparable to ImageNet "
                "Inception FID")
ADM_LABEL = "ImageNet metrics (Inception-v3 pool3 features, ADM reference batch)"


def default_classifier_path() -> Path:
    return Path(os.environ.get("FPQVAR_CLASSIFIER", default_paths(check=False).classifier))


def default_reference_path() -> Path:
    return Path(os.environ.get("FPQVAR_REFERENCE_STATS", default_paths(check=False).reference_stats))


def load_digit_net(path: str | os.PathLike | None = None):
    """The trained DigitNet (eval mode). Errors name the file and the mismatching keys, dtypes or NaN weights."""
    path = Path(path) if path is not None else default_classifier_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: digit classifier weights not found (shipped with the default model as "
                                f"fpqvar/assets/default/classifier.safetensors; train one with "
                                f"`fpqvar train classifier` and pass --classifier, or set FPQVAR_CLASSIFIER)")
    try:
        sd = load_file(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    net = DigitNet()
    own = net.state_dict()
    bad = sorted(set(own) ^ set(sd)) + [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"{path}: not DigitNet weights (mismatching keys/shapes: {bad[:6]})")
    check_tensors(own, sd, str(path), params={k for k, _ in net.named_parameters()})
    net.load_state_dict(sd, strict=True)
    return net.eval().requires_grad_(False).to(torch.float32)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DomainReference:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    features: np.ndarray  # (N, D) float32, for precision / recall
    labels: np.ndarray  # (N,) int64
    meta: dict = field(default_factory=dict)  # classifier hash, floor metrics, split description
    path: str = ""

    @property
    def label(self) -> str:
        return DOMAIN_LABEL


_DOMAIN_KEYS = ("mu", "sigma", "features", "labels", "meta_json")


def save_domain_reference(path: str | os.PathLike, ref: DomainReference) -> Path:
    arrays = {"mu": ref.mu.astype(np.float64), "sigma": ref.sigma.astype(np.float64),
              "features": ref.features.astype(np.float32), "labels": ref.labels.astype(np.int64),
              "meta_json": np.array(json.dumps({**ref.meta, "version": REFERENCE_VERSION}, sort_keys=True))}

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write_with(path, w)


def load_domain_reference(path: str | os.PathLike | None = None) -> DomainReference:
    path = Path(path) if path is not None else default_reference_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: domain reference statistics not found (shipped as "
                                f"fpqvar/assets/default/reference_stats.npz; build them with "
                                f"`fpqvar eval build-reference`, or set FPQVAR_REFERENCE_STATS)")
    arrs = load_npz(path, "domain reference npz")
    missing = [k for k in _DOMAIN_KEYS if k not in arrs]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing} (keys: {sorted(arrs)})")
    D = arrs["mu"].shape[0] if arrs["mu"].ndim == 1 else -1
    checks = {"mu": (D,), "sigma": (D, D), "features": (arrs["features"].shape[0], D),
              "labels": (arrs["features"].shape[0],)}
    for k, shape in checks.items():
        if D < 1 or arrs[k].shape != shape:
            raise ValueError(f"{path}: key {k!r} has shape {arrs[k].shape}, expected {shape}")
    meta = json.loads(str(arrs["meta_json"]))
    if meta.get("version") != REFERENCE_VERSION:
        raise ValueError(f"{path}: reference version {meta.get('version')} != {REFERENCE_VERSION}; rebuild it")
    return DomainReference(arrs["mu"], arrs["sigma"], arrs["features"], arrs["labels"], meta, str(path))


@dataclass(frozen=True)
class AdmReference:
    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray | None
    sigma_s: np.ndarray | None
    images: np.ndarray | None  # (N, H, W, 3) uint8
    path: str

    @property
    def label(self) -> str:
        return ADM_LABEL


def load_adm_reference(path: str | os.PathLike) -> AdmReference:
    """The ADM reference batch; errors name the file and key. mu / sigma are required; mu_s / sigma_s (sFID) and
    arr_0 (P/R) are optional, and the metrics that need them are then reported as unavailable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: ADM reference batch not found. Download VIRTUAL_imagenet256_labeled.npz (OpenAI "
            f"guided-diffusion evaluations, https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/"
            f"imagenet/256/VIRTUAL_imagenet256_labeled.npz) on a machine with network access and pass its path "
            f"with --reference")
    z = load_npz(path, "ADM reference batch")
    for k in ("mu", "sigma"):
        if k not in z:
            raise ValueError(f"{path}: missing key {k!r} (keys: {sorted(z)}); not an ADM reference batch")
    mu, sigma = z["mu"], z["sigma"]
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} / sigma {sigma.shape} are not (D,) / (D, D)")
    mu_s, sigma_s = z.get("mu_s"), z.get("sigma_s")
    if (mu_s is None) != (sigma_s is None) or (mu_s is not None and sigma_s.shape != (mu_s.shape[0],) * 2):
        raise ValueError(f"{path}: mu_s / sigma_s must both be present with shapes (D,) / (D, D)")
    images = z.get("arr_0")
    if images is not None and (images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"{path}: arr_0 must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    return AdmReference(mu.astype(np.float64), sigma.astype(np.float64), mu_s, sigma_s, images, str(path))
