"""Stand-in data sets: small, format-faithful copies of the data sets the ``paper`` profile reads.

Each writer puts files under a data root exactly as the kit's loaders (and torchvision) read the
real data sets, with content a small network learns in an epoch or two:

- :func:`write_mnist`: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (big-endian IDX);
  digit ``c`` is a bright 6x6 square at one of ten grid positions, jittered, on faint noise.
- :func:`write_cifar10`: ``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch`` and
  ``batches.meta`` (pickled dicts, ``data`` rows channel-major 3x32x32 uint8); class ``c`` has its
  own colour and stripe direction. Its md5 sums are not the official ones, as for any copy.
- :func:`write_gtsrb`: ``gtsrb/GTSRB/Training/00000..00042/*.ppm`` (every class folder, as
  torchvision numbers them in sorted order), ``gtsrb/GTSRB/Final_Test/Images/*.ppm`` and the
  ``;``-separated ``gtsrb/GT-final_test.csv``; class ``c`` is a disc of its own hue, images of
  varying size.
- :func:`write_mammograms`: ``mammograms/`` with ``labels.csv`` (``path,label,lesion_type,mask``)
  and images in every format the loader decodes (see :data:`MAMMO_FORMATS`): 8- and 16-bit PNG,
  12-bit data in a 16-bit PNG (with its sBIT chunk), DICOM MONOCHROME2 and MONOCHROME1, with a
  window, with a rescale slope and intercept, with a VOI LUT sequence, and JPEG 2000 (a ``.jp2``
  file and a DICOM in the JPEG 2000 lossless transfer syntax, both written through Pillow's
  OpenJPEG codec, which pydicom also decodes them with). Every
  format encodes the same kind of picture so that each decodes to (nearly) the same [0, 1]
  image; lesion images carry a mass or a calcification cluster and an 8-bit PNG mask.

Nothing here downloads anything. The files are tiny (a whole set writes in well under a second).
"""

from __future__ import annotations

import colorsys
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]

#: Every mammogram file format the stand-in writes, cycled over the rows of ``labels.csv``.
MAMMO_FORMATS = ("png8", "png16", "png12", "dcm_mono2", "dcm_mono1", "dcm_window",
                 "dcm_rescale", "dcm_voilut", "jp2", "dcm_j2k")


# ------------------------------------------------------------------------------------- MNIST


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's big-endian IDX format: magic (0, 0, type 0x08 = uint8, ndim), dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def mnist_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(N, 28, 28)`` uint8: digit ``c`` is a 6x6 square of 200-255 at grid cell
    ``(c // 5, c % 5)``, jittered by up to one pixel, on noise in [0, 40)."""
    out = rng.integers(0, 40, (len(labels), 28, 28))
    for i, c in enumerate(labels):
        y0 = 4 + 12 * (int(c) // 5) + int(rng.integers(-1, 2))
        x0 = 1 + 5 * (int(c) % 5) + int(rng.integers(0, 2))
        out[i, y0:y0 + 6, x0:x0 + 6] = rng.integers(200, 256, (6, 6))
    return out.astype(np.uint8)


def write_mnist(root: str | Path, n_train: int = 200, n_test: int = 100,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write MNIST's four raw IDX files under ``root/MNIST/raw``; returns
    ``{"train": (images, labels), "test": (images, labels)}`` as written."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = mnist_images(labels, rng)
        write_idx(raw / f"{stem}-images-idx3-ubyte", images)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", labels)
        out[split] = (images, labels.astype(np.int64))
    return out


# ---------------------------------------------------------------------------------- CIFAR-10


def cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(N, 3, 32, 32)`` uint8: class ``c`` is its own hue (``c / 10``) modulated by stripes
    along one of two directions (``c % 2``), plus noise."""
    out = np.empty((len(labels), 3, 32, 32), dtype=np.uint8)
    ramp = (np.arange(32) // 4) % 2
    for i, c in enumerate(labels):
        rgb = np.array(colorsys.hsv_to_rgb(int(c) / 10, 0.9, 0.9))
        stripes = ramp[None, :] if int(c) % 2 else ramp[:, None]
        img = rgb[:, None, None] * (0.55 + 0.45 * stripes)[None] * 255
        img = img + rng.normal(0, 12, img.shape)
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def write_cifar10(root: str | Path, n_per_batch: int = 40, n_test: int = 100,
                  seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``root/cifar-10-batches-py/`` (five training batches of ``n_per_batch`` images,
    ``test_batch``, ``batches.meta``); returns ``{"train": (x, y), "test": (x, y)}`` with x
    ``(N, 3, 32, 32)`` uint8 in file order."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(name: str, n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        labels = (np.arange(offset, offset + n) % 10).astype(np.int64)
        x = cifar_images(labels, rng)
        entry = {"batch_label": name, "labels": labels.tolist(),
                 "data": x.reshape(n, 3 * 32 * 32), "filenames": [f"{name}_{i}.png"
                                                                 for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        return x, labels

    parts = [batch(f"data_batch_{b}", n_per_batch, b * 3) for b in range(1, 6)]
    test = batch("test_batch", n_test, 0)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": n_per_batch,
                     "num_vis": 3072}, f)
    return {"train": (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])),
            "test": test}


# ------------------------------------------------------------------------------------- GTSRB


def gtsrb_image(c: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size, 3)`` uint8: a disc of hue ``c / 43`` on grey noise."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= (0.35 * size) ** 2
    img = rng.normal(110, 15, (size, size, 3))
    img[disc] = np.array(colorsys.hsv_to_rgb(c / 43, 1.0, 1.0)) * 230
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_gtsrb(root: str | Path, n_train_per_class: int = 2, n_train_rich: int = 30,
                rich_classes: Sequence[int] = (2, 25), n_test_per_class: int = 15,
                seed: int = 0, ground_truth: bool = True) -> dict[str, list[tuple[str, int]]]:
    """Write GTSRB as torchvision reads it under ``root/gtsrb``.

    Every one of the 43 training class folders gets ``n_train_per_class`` PPMs (torchvision
    numbers the folders in sorted order, so none may be missing), ``rich_classes`` get
    ``n_train_rich``; the test split holds ``n_test_per_class`` images of each rich class, listed
    in ``GT-final_test.csv`` (left out with ``ground_truth=False``). Image sides vary from 24 to
    40 pixels, as GTSRB's do. Returns ``{"train": [(path, class)], "test": [(path, class)]}``.
    """
    from PIL import Image

    base = Path(root) / "gtsrb"
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for c in range(43):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_train_rich if c in rich_classes else n_train_per_class):
            path = folder / f"{i // 30:05d}_{i % 30:05d}.ppm"
            Image.fromarray(gtsrb_image(c, int(rng.integers(24, 41)), rng)).save(path)
            out["train"].append((str(path), c))
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    k = 0
    for c in rich_classes:
        for _ in range(n_test_per_class):
            size = int(rng.integers(24, 41))
            name = f"{k:05d}.ppm"
            Image.fromarray(gtsrb_image(c, size, rng)).save(images / name)
            lines.append(f"{name};{size};{size};2;2;{size - 2};{size - 2};{c}")
            out["test"].append((str(images / name), c))
            k += 1
    if ground_truth:
        (base / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    return out


# -------------------------------------------------------------------------------- mammograms


def write_png(path: Path, pixels: np.ndarray, sbit: int | None = None) -> None:
    """A grayscale PNG of ``pixels`` (uint8: 8-bit, uint16: 16-bit), with an ``sBIT`` chunk
    (significant bits of the grey channel) when ``sbit`` is given. Written by hand so the chunk
    order is the standard's (sBIT before IDAT) and the samples are exactly ``pixels``."""
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    h, w = pixels.shape
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
    if sbit is not None:
        data += chunk(b"sBIT", bytes([sbit]))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(data)


def write_dicom(path: Path, stored: np.ndarray, *, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, window: tuple[float, float] | None = None,
                rescale: tuple[float, float] | None = None,
                voi_lut: tuple[int, int, np.ndarray] | None = None,
                jpeg2000: bool = False) -> None:
    """A grayscale mammography DICOM (16 bits allocated) written with pydicom: uncompressed, or
    with ``jpeg2000=True`` one lossless JPEG 2000 frame (transfer syntax 1.2.840.10008.1.2.4.90).

    Args:
        stored: the stored values (uint16, below ``2 ** bits_stored``).
        photometric: ``MONOCHROME2`` (high is bright) or ``MONOCHROME1`` (high is dark).
        window: ``(center, width)`` of a linear VOI window.
        rescale: ``(slope, intercept)`` of the modality transform.
        voi_lut: ``(first_mapped, bits, table)``: a VOI LUT sequence of one LUT.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # digital mammography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        first, bits, table = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(table), first, bits]
        item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data, one word each
        ds.VOILUTSequence = DicomSequence([item])
    if jpeg2000:
        import io

        from PIL import Image
        from pydicom.encaps import encapsulate
        from pydicom.uid import JPEG2000Lossless

        buf = io.BytesIO()
        Image.fromarray(stored.astype(np.uint16)).save(buf, format="JPEG2000", codec="j2k",
                                                       irreversible=False)
        meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


#: The VOI LUT of ``dcm_voilut``: 4096 entries, 8-bit output, a square-root curve
#: (``LUT[s] = round(255 * sqrt(s / 4095))``).
VOI_LUT = np.rint(255 * np.sqrt(np.arange(4096) / 4095)).astype(np.int64)


def encode_mammogram(img: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    """Write the [0, 1] image ``img`` in format ``fmt`` (one of :data:`MAMMO_FORMATS`) so that the
    loader decodes it back to ``img`` up to the format's quantisation; returns what the loader
    should decode, computed by hand from the stored values."""
    if fmt == "png8":
        q = np.rint(img * 255).astype(np.uint8)
        write_png(path, q)
        return q / 255
    if fmt == "png16":
        q = np.rint(img * 65535).astype(np.uint16)
        write_png(path, q)
        return q / 65535
    if fmt == "png12":  # 12-bit data in a 16-bit PNG, its depth recorded in sBIT
        q = np.rint(img * 4095).astype(np.uint16)
        write_png(path, q, sbit=12)
        return q / 4095
    if fmt == "dcm_mono2":
        q = np.rint(img * 4095).astype(np.uint16)
        write_dicom(path, q)
        return q / 4095
    if fmt == "dcm_mono1":  # high stored values are dark: the loader flips them
        q = np.rint((1 - img) * 4095).astype(np.uint16)
        write_dicom(path, q, photometric="MONOCHROME1")
        return 1 - q / 4095
    if fmt == "dcm_window":
        # centre 2048, width 2048 maps stored 1024 to 0 and 3071 to the top of the 12-bit
        # output range, linearly between (DICOM PS3.3 C.11.2.1.2)
        q = (1024 + np.rint(img * 2047)).astype(np.uint16)
        write_dicom(path, q, window=(2048, 2048))
        return (q.astype(np.float64) - 1024) / 2047
    if fmt == "dcm_rescale":
        # slope 2, intercept -100: values 2 s - 100 over the range [-100, 8090]
        q = np.rint(img * 4095).astype(np.uint16)
        write_dicom(path, q, rescale=(2.0, -100.0))
        return (2.0 * q - 100 + 100) / 8190
    if fmt == "dcm_voilut":
        q = np.rint(img ** 2 * 4095).astype(np.uint16)
        write_dicom(path, q, voi_lut=(0, 8, VOI_LUT))
        return VOI_LUT[q] / 255
    if fmt == "dcm_j2k":
        q = np.rint(img * 4095).astype(np.uint16)
        write_dicom(path, q, jpeg2000=True)
        return q / 4095
    if fmt == "jp2":
        from PIL import Image

        q = np.rint(img * 65535).astype(np.uint16)
        Image.fromarray(q).save(path)  # lossless JPEG 2000 (Pillow's default)
        return q / 65535
    raise ValueError(f"unknown mammogram format {fmt!r}; expected one of {MAMMO_FORMATS}")


_SUFFIX = {"png8": ".png", "png16": ".png", "png12": ".png", "jp2": ".jp2"}


def mammogram(lesion_type: int, h: int, w: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """A [0, 1] picture ``(h, w)`` and its lesion mask: smooth tissue on a dark background; a
    mass (lesion type 2) is a bright disc, a calcification cluster (type 1) five bright
    3x3 specks."""
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    tissue = 0.25 + 0.1 * np.sin(6 * yy + rng.uniform(0, 6)) * np.cos(5 * xx + rng.uniform(0, 6))
    img = tissue + rng.normal(0, 0.02, (h, w))
    mask = np.zeros((h, w), dtype=bool)
    cy, cx = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
    if lesion_type == 2:
        r = max(h, w) // 7
        mask = (np.mgrid[:h, :w][0] - cy) ** 2 + (np.mgrid[:h, :w][1] - cx) ** 2 <= r * r
        img[mask] += 0.4
    elif lesion_type == 1:
        for _ in range(5):
            y = int(np.clip(cy + rng.integers(-6, 7), 1, h - 2))
            x = int(np.clip(cx + rng.integers(-6, 7), 1, w - 2))
            mask[y - 1:y + 2, x - 1:x + 2] = True
        img[mask] += 0.55
    return np.clip(img, 0.0, 1.0), mask


def write_mammograms(root: str | Path, n: int = 36, shape: tuple[int, int] = (48, 40),
                     formats: Sequence[str] = MAMMO_FORMATS, folder: str = "mammograms",
                     seed: int = 0) -> list[dict]:
    """Write ``n`` mammograms into ``root/folder`` with ``labels.csv``
    (``path,label,lesion_type,mask``); rows cycle through ``formats`` and through lesion types
    0, 1, 2 (label 1 for a lesion); lesion rows have an 8-bit PNG mask under ``masks/``.

    Returns one dict per row: ``path``, ``format``, ``label``, ``lesion_type``, ``mask`` (the
    boolean mask or None), ``image`` (the picture encoded) and ``decoded`` (what the loader
    should read back, from the stored values).
    """
    base = Path(root) / folder
    (base / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, lines = [], ["path,label,lesion_type,mask"]
    for i in range(n):
        fmt = formats[i % len(formats)]
        lesion = (i // len(formats) + i) % 3
        img, mask = mammogram(lesion, *shape, rng)
        rel = f"{i:03d}_{fmt}{_SUFFIX.get(fmt, '.dcm')}"
        decoded = encode_mammogram(img, fmt, base / rel)
        mask_rel = ""
        if lesion:
            mask_rel = f"masks/{i:03d}.png"
            write_png(base / mask_rel, (mask * 255).astype(np.uint8))
        lines.append(f"{rel},{int(lesion > 0)},{lesion},{mask_rel}")
        rows.append({"path": rel, "format": fmt, "label": int(lesion > 0), "lesion_type": lesion,
                     "mask": mask if lesion else None, "image": img, "decoded": decoded})
    (base / "labels.csv").write_text("\n".join(lines) + "\n")
    return rows


def write_all(root: str | Path, seed: int = 0) -> dict[str, object]:
    """Every stand-in under one data root: MNIST, CIFAR-10, GTSRB and ``mammograms/``."""
    return {"mnist": write_mnist(root, seed=seed), "cifar10": write_cifar10(root, seed=seed),
            "gtsrb": write_gtsrb(root, seed=seed), "mammo_folder": write_mammograms(root, seed=seed)}
