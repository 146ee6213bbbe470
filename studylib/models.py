"""The small networks the studies share: CNN, MLP, LeNet-style and a narrow ResNet.

Build them through :func:`build_model`, which fills in every default and attaches the full
configuration as ``model.config`` (a JSON-able dict that enters checkpoint cache keys). Models
that have a feature extractor and a classifier expose them as ``.features`` and
``.classifier`` (study 03 freezes the first and makes the second Bayesian).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then restore the mode it had (also when the
    block raises). Forward passes inside leave BatchNorm running statistics untouched.

    Example:
        >>> with eval_mode(model):
        ...     logits = model(x)
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _feature_dim(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Width of ``features``' flattened output, found by one forward pass in eval mode (so that
    BatchNorm running statistics and ``num_batches_tracked`` keep their initial values)."""
    with eval_mode(features), torch.no_grad():
        return int(features(torch.zeros(1, in_channels, image_size, image_size)).shape[1])


class SmallCNN(nn.Module):
    """Two conv blocks (conv3x3 - [BN] - ReLU - maxpool2) and a two-layer classifier.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: outputs.
        image_size: input height = width (>= 4).
        width: channels of the first conv (the second has ``2 * width``), default 16.
        hidden: units of the hidden fully connected layer, default 64.
        dropout: dropout before the last layer (used by MC dropout), default 0.0.
        batchnorm: BatchNorm after each conv, default False.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width: int = 16, hidden: int = 64, dropout: float = 0.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width),
                                      nn.Flatten())
        dim = _feature_dim(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_classes))
        # Channels-last conv weights make the convolutions write channels-last activations, for
        # which the CPU max-pool is several times faster than for NCHW ones (measured at one
        # thread on an AMD EPYC: max-pool of a [512, 8, 32, 32] batch 39 -> 8 ms; a training
        # step of this net (width 8) on 128 1x28x28 digits 25 -> 13 ms, inference 11 -> 5 ms).
        # The same function: only the memory layout and hence the kernels' summation order
        # differ (float noise). Checkpoints and cache keys do not see the layout (state_dict
        # copies keep the receiving tensor's strides).
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten, then ``Linear - ReLU - [Dropout]`` per hidden layer, then a linear output.

    Args:
        in_features: flattened input size (e.g. 64 for 8x8 grey digits).
        num_classes: outputs.
        hidden: widths of the hidden layers, default ``(128,)``.
        dropout: dropout after each hidden activation, default 0.0.
    """

    def __init__(self, in_features: int = 64, num_classes: int = 10,
                 hidden: Sequence[int] = (128,), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = int(h)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(prev, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet-style: two conv5x5 (padding 2) - [BN] - ReLU - maxpool2 blocks, then FC layers.

    Args:
        in_channels, num_classes, image_size: as for :class:`SmallCNN` (image_size >= 4).
        widths: channels of the two convs, default ``(6, 16)``.
        hidden: widths of the FC layers, default ``(120, 84)``.
        batchnorm: BatchNorm after each conv, default False.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 widths: Sequence[int] = (6, 16), hidden: Sequence[int] = (120, 84),
                 batchnorm: bool = False) -> None:
        super().__init__()
        c1, c2 = (int(w) for w in widths)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c1, 5, padding=2)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(c1))
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5, padding=2)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(c2))
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        prev = _feature_dim(self.features, in_channels, image_size)
        fc: list[nn.Module] = []
        for h in hidden:
            fc += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        fc.append(nn.Linear(prev, num_classes))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SpatialMean(nn.Module):
    """Global average pooling as a mean over the spatial dims (output ``(N, C, 1, 1)``).

    Same numbers as ``nn.AdaptiveAvgPool2d(1)``, but its backward is a broadcast, which CUDA
    computes deterministically; the CUDA backward of adaptive average pooling is one of the
    kernels ``torch.use_deterministic_algorithms(True)`` refuses.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class NarrowResNet(nn.Module):
    """A narrow CIFAR-style ResNet of :class:`BasicBlock` stages.

    Args:
        in_channels, num_classes: as above.
        image_size: input size (recorded; the network is size-agnostic via global pooling).
        widths: channels per stage, default ``(16, 32, 64)``; stages after the first halve the
            resolution.
        blocks_per_stage: blocks per stage, default ``(1, 1, 1)`` (``(2, 2, 2, 2)`` with widths
            ``(64, 128, 256, 512)`` is ResNet-18).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 widths: Sequence[int] = (16, 32, 64),
                 blocks_per_stage: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        blocks_per_stage = [int(b) for b in blocks_per_stage]
        if len(widths) != len(blocks_per_stage) or not widths:
            raise ValueError("widths and blocks_per_stage must be non-empty and of equal length")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        prev = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(prev, w, stride=2 if (i > 0 and j == 0) else 1))
                prev = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.features = nn.Sequential(self.stem, self.stages, SpatialMean(), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(prev, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, type[nn.Module]] = {
    "small_cnn": SmallCNN,
    "mlp": MLP,
    "lenet": LeNet,
    "resnet": NarrowResNet,
}


def build_model(name: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a model by name and attach its complete configuration as ``model.config``.

    Args:
        name: one of ``"small_cnn"``, ``"mlp"``, ``"lenet"``, ``"resnet"``.
        seed: if given, the weights are initialised from this seed without touching the global
            generator's state (so the same seed gives the same initial weights anywhere).
        **kwargs: the model's constructor arguments (see each class).

    Example:
        >>> m = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8, seed=0)
        >>> m.config["width"]
        16
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    cls = MODELS[name]
    sig = inspect.signature(cls.__init__)
    valid = [p for p in sig.parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for model {name!r}; valid: {valid}")
    config: dict[str, Any] = {"name": name}
    for p in valid:
        v = kwargs.get(p, sig.parameters[p].default)
        config[p] = list(v) if isinstance(v, tuple) else v
    if seed is None:
        model = cls(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = cls(**kwargs)
    model.config = config  # type: ignore[attr-defined]
    return model
