"""Standard Inception-v3 features for ImageNet FID / IS / P-R, via torchmetrics' port of torch-fidelity's
FeatureExtractorInceptionV3 (the TF 2015-12-05 graph's weights; the network behind the ADM evaluator's pool_3).

Nothing is downloaded: the weights file must be present locally. This environment cannot run it (torch-fidelity
imports torchvision, and no torchvision matches torch 2.13: shared/spec/environment.md section 4), so the
requirement is checked up front and the error says exactly what to install and where to put the weights.
sFID needs the graph's spatial mixed_6/conv features, which this port does not expose: it is reported as
unavailable rather than approximated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"


class InceptionUnavailable(RuntimeError):
    pass


def default_weights_path() -> Path:
    env = os.environ.get("FPQVAR_INCEPTION_WEIGHTS")
    if env:
        return Path(env)
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / WEIGHTS_NAME


def check_available(weights: str | os.PathLike | None = None) -> Path:
    """Path of the weights when the Inception path can run; InceptionUnavailable with instructions otherwise."""
    import torch

    try:
        import torch_fidelity  # noqa: F401  (torchmetrics' NoTrainInceptionV3 subclasses its extractor)
    except Exception as e:  # ImportError, or torchvision failing to load inside torch_fidelity
        raise InceptionUnavailable(
            f"ImageNet metrics need torch-fidelity, which failed to import ({type(e).__name__}: {e}). Install "
            f"torch-fidelity and a torchvision built for torch {torch.__version__} (pip install torch-fidelity "
            f"torchvision==<the version matching torch {torch.__version__}>), then place {WEIGHTS_NAME} locally. "
            f"Domain metrics of the default model (--model default) need none of this.") from None
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise InceptionUnavailable(
            f"Inception-v3 weights not found at {path}. Download {WEIGHTS_URL} on a machine with network access "
            f"and place it at {path} (or pass --inception-weights, or set FPQVAR_INCEPTION_WEIGHTS).")
    return path


class InceptionFeatures:
    """pool3 features (2048) and unbiased logits (1008, as torch-fidelity's IS) of uint8 images."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu"):
        path = check_available(weights)
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.device = device
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(path)).to(device)

    def __call__(self, images_NHWC_u8: np.ndarray, batch: int = 100) -> tuple[np.ndarray, np.ndarray]:
        import torch

        feats, logits = [], []
        with torch.no_grad():
            for s in range(0, len(images_NHWC_u8), batch):
                x = torch.from_numpy(images_NHWC_u8[s:s + batch]).permute(0, 3, 1, 2).to(self.device)
                # _torch_fidelity_forward returns every requested feature (forward() keeps only the first)
                f, lg = self.net._torch_fidelity_forward(x)
                feats.append(f.reshape(len(x), -1).double().cpu().numpy())
                logits.append(lg.double().cpu().numpy())
        return np.concatenate(feats), np.concatenate(logits)
