"""Data sets by name: embedded real data, procedural generators, the user's images, torchvision.

One entry point, :func:`load`, returns a :class:`DataBundle` holding a train and a test
:class:`Split`. Every split holds ``x`` as float32 ``(N, C, H, W)`` in ``[0, 1]``, ``y`` as int64
``(N,)`` and a dict ``extras`` of per-example side information (masks, lesion types, ...).
Every generator is deterministic in its ``seed``: the same arguments give the same tensors.

Names (see each ``_load_<name>`` function for its arguments):

- ``"digits"``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images), offline.
- ``"signs"``: procedural RGB traffic signs modelled on eight GTSRB classes, with object masks.
- ``"mammo_phantom"``: procedural mammogram patches with microcalcification clusters and masses.
- ``"mammo_folder"``: the user's own mammograms (PNG, JPEG 2000 or DICOM) listed in a CSV file.
- ``"mnist"``, ``"cifar10"``, ``"gtsrb"``: torchvision data sets read from a data root.

Example::

    from studylib import data
    bundle = data.load("signs", n_train=2000, n_test=500, classes=[2, 25], seed=0)
    bundle.num_classes, bundle.input_shape      # 2, (3, 32, 32)
    bundle.train.extras["mask"].shape           # (2000, 1, 32, 32)

``bundle.spec`` is a JSON-able dict of every argument that determined the tensors (name
included, defaults filled in; for the data sets read from disk, ``content_sha256``, a digest of
the pixels and labels); the training cache uses it in its keys. :func:`check` says whether a
data set read from disk is where its loader looks, :func:`download` fetches a torchvision one.
"""

from __future__ import annotations

from .bundle import GENERATOR_VERSION, DataBundle, DataSetCheck, Split
from .mammo_phantom import speck_cnr
from .registry import EMBEDDED, ON_DISK, available, check, download, load
from .signs import GTSRB_CLASS_NAMES, SIGN_CLASSES

__all__ = [
    "DataBundle",
    "DataSetCheck",
    "EMBEDDED",
    "ON_DISK",
    "GENERATOR_VERSION",
    "Split",
    "load",
    "available",
    "check",
    "download",
    "SIGN_CLASSES",
    "GTSRB_CLASS_NAMES",
    "speck_cnr",
]
