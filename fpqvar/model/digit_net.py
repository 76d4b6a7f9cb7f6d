"""The default model's domain feature network: a small digit classifier on 32x32 RGB images in [0, 1].

Its penultimate features (``num_features`` = 128) feed FID and precision / recall, its logits IS and class
accuracy. These are domain metrics for the embedded default, not comparable to ImageNet FID.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DigitNet(nn.Module):
    num_features = 128

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(128 * 4 * 4, self.num_features)
        self.out = nn.Linear(self.num_features, num_classes)

    def features(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """(B, 128) penultimate features of images in [0, 1]."""
        if img_B3HW.ndim != 4 or img_B3HW.shape[1:] != (3, 32, 32):
            raise ValueError(f"DigitNet expects (B, 3, 32, 32) images in [0, 1], got {tuple(img_B3HW.shape)}")
        x = img_B3HW.float() * 2 - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(img_B3HW))
