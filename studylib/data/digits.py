"""``digits``: scikit-learn's bundled real handwritten digits (1,797 8x8 images), offline."""

from __future__ import annotations

import torch

from .bundle import DataBundle, Split, _check_fraction, _check_int, _resize, _stratified_split


def _load_digits(image_size: int = 8, test_fraction: float = 0.3, seed: int = 0) -> DataBundle:
    """scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits test set), offline.

    Args:
        image_size: side of the returned images; 8 keeps the originals, anything else
            (e.g. 28, the MNIST size) resizes bilinearly and clamps to [0, 1]. Default 8.
        test_fraction: fraction of each class that goes to the test split, in (0, 1). Default 0.3.
        seed: seed of the stratified split. Default 0.

    x is ``pixel / 16`` (the original 0..16 counts), shape ``(N, 1, image_size, image_size)``.
    """
    image_size = _check_int("image_size", image_size, 2)
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = _resize(x, image_size)
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = _stratified_split(d.target, test_fraction, seed)
    spec = {"name": "digits", "image_size": image_size, "test_fraction": test_fraction,
            "seed": seed}
    return DataBundle(
        name="digits", spec=spec,
        train=Split(x[tr], y[tr], {"index": torch.as_tensor(tr)}),
        test=Split(x[te], y[te], {"index": torch.as_tensor(te)}),
        classes=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits", "extras": {
            "index": "row of the example in sklearn's load_digits()"}},
    )


