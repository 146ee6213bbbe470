"""``mammo_folder``: the user's own mammograms (PNG or DICOM) listed in a CSV file."""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import (
    DataBundle,
    Split,
    _check_choice,
    _check_fraction,
    _check_int,
    _resize,
    _stratified_split,
)


class _BadImage(Exception):
    """An image file that is missing or cannot be decoded (message names the reason)."""


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_output_range(ds: Any) -> tuple[float, float]:
    """The value range of a DICOM image after its modality and VOI transforms.

    Mirrors the DICOM standard (PS3.3 C.11): a VOI LUT sequence outputs
    ``[0, 2^bits - 1]`` with bits from its LUT Descriptor; otherwise (a window, or no VOI
    transform) the range is that of the modality output: a modality LUT's ``[0, 2^bits - 1]``,
    else the stored-value range (BitsStored, signed or not) through RescaleSlope/Intercept.
    pydicom's ``apply_windowing`` maps a window onto this same range.
    """
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    mod = ds.get("ModalityLUTSequence")
    if mod:
        return 0.0, float(2 ** int(mod[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - any decoder failure is reported with its reason
        raise _BadImage(f"not a readable DICOM image ({type(e).__name__}: {e})") from e
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise _BadImage(f"DICOM has {ds.SamplesPerPixel} samples per pixel; expected grayscale")
    if arr.ndim == 3:  # multi-frame: the first frame
        arr = arr[0]
    lo, hi = _dicom_output_range(ds)
    arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    x = np.clip((np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        x = 1.0 - x  # MONOCHROME1: low values are bright; flip so dense tissue is bright
    return x


def _read_bitmap(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I;16"):
                return np.asarray(im, dtype=np.float64) / 65535.0
            if mode == "I":  # 32-bit int container; PNGs come here with 16-bit samples
                arr = np.asarray(im, dtype=np.float64)
                return np.clip(arr / 65535.0, 0.0, 1.0)
            if mode == "F":
                return np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0)
            if mode != "L":
                im = im.convert("L")
            return np.asarray(im, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _BadImage(f"not a readable image ({type(e).__name__}: {e})") from e


def _read_mammogram(path: Path) -> np.ndarray:
    """A 2-D float64 array in [0, 1] from a PNG/other bitmap (scaled by its bit depth's
    maximum) or a DICOM file (modality LUT, VOI LUT/window, MONOCHROME1 inverted)."""
    if not path.is_file():
        raise _BadImage("file not found" if not path.exists() else "not a regular file")
    x = _read_dicom(path) if _is_dicom(path) else _read_bitmap(path)
    if x.ndim != 2 or min(x.shape) < 1:
        raise _BadImage(f"expected a 2-D grayscale image, got shape {x.shape}")
    return x


def _fit_square(x: np.ndarray, size: int, how: str) -> torch.Tensor:
    """``(1, size, size)`` from a 2-D array: ``resize`` (stretch), ``pad`` (pad to a square
    with zeros, then resize: keeps the aspect ratio) or ``crop`` (centre crop at native
    resolution, zero-padded where the image is smaller)."""
    t = torch.as_tensor(x, dtype=torch.float32)
    h, w = t.shape
    if how == "crop":
        out = torch.zeros(size, size)
        sh, sw = min(h, size), min(w, size)
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        oy, ox = (size - sh) // 2, (size - sw) // 2
        out[oy:oy + sh, ox:ox + sw] = t[y0:y0 + sh, x0:x0 + sw]
        return out.unsqueeze(0)
    if how == "pad" and h != w:
        side = max(h, w)
        sq = torch.zeros(side, side)
        sq[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = t
        t = sq
    return _resize(t.view(1, 1, *t.shape), size)[0]


def _read_label_csv(csv_path: Path) -> list[dict[str, Any]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in fields]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; the CSV needs "
                             f"path,label and optionally lesion_type and split (found {fields})")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("path"):
                raise ValueError(f"{csv_path} line {line}: empty path")
            out: dict[str, Any] = {"path": row["path"], "line": line}
            for col in ("label", "lesion_type"):
                if col not in fields:
                    continue
                try:
                    out[col] = int(row[col])
                except ValueError:
                    raise ValueError(f"{csv_path} line {line}: {col} must be a non-negative "
                                     f"integer, got {row[col]!r}") from None
                if out[col] < 0:
                    raise ValueError(f"{csv_path} line {line}: {col} must be >= 0, got {out[col]}")
            if "split" in fields:
                sp = row.get("split", "").lower()
                if sp not in ("train", "test"):
                    raise ValueError(f"{csv_path} line {line}: split must be 'train' or 'test', "
                                     f"got {row.get('split')!r}")
                out["split"] = sp
            rows.append(out)
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    return rows


def _load_mammo_folder(data_root: str | None = None, csv: str = "labels.csv",
                       image_size: int = 512, resize: str = "resize", skip_bad: bool = False,
                       test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """The user's own mammograms: PNG (8 or 16 bit) or DICOM files listed in a CSV.

    The CSV has a header and columns ``path,label`` and optionally ``lesion_type`` (0 none,
    1 calcification, 2 mass, or your own coding) and ``split`` (``train``/``test``; without it
    the split is stratified by label with ``test_fraction`` and ``seed``). Paths are relative
    to ``data_root``. Pixels are scaled to [0, 1]: PNG by its bit depth's maximum (255 or
    65535); DICOM through ``apply_modality_lut`` then ``apply_voi_lut`` (window or VOI LUT),
    divided by that output's value range, MONOCHROME1 inverted so dense tissue is bright.

    Args:
        data_root: folder of the images and the CSV; relative paths are taken from the repo
            root. Default ``studylib.core.paths.default_data_root() / "mammograms"``.
        csv: the CSV file name inside ``data_root`` (or an absolute path). Default "labels.csv".
        image_size: side of the returned square images. Default 512.
        resize: "resize" (stretch to a square), "pad" (zero-pad to a square, then resize) or
            "crop" (centre crop at native resolution). Default "resize".
        skip_bad: False (default): a missing or unreadable file raises an error naming the file,
            its CSV line and the reason. True: such files are skipped with one warning that
            counts them (listed in ``bundle.info["skipped"]``).
        test_fraction, seed: the stratified split when the CSV has no ``split`` column.

    Extras: ``"path"`` (list of CSV paths), ``"lesion_type"`` (int64, when the CSV has it).
    """
    from ..core import paths

    image_size = _check_int("image_size", image_size, 8)
    resize = _check_choice("resize", resize, ("resize", "pad", "crop"))
    if not isinstance(skip_bad, bool):
        raise ValueError(f"skip_bad must be true or false, got {skip_bad!r}")
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
    root = paths.resolve(data_root) if data_root else paths.default_data_root() / "mammograms"
    if not root.is_dir():
        raise FileNotFoundError(f"mammo_folder: data_root {str(root)!r} is not a folder; put "
                                f"your images and {csv} there or pass data_root=...")
    csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
    if not csv_path.is_file():
        raise FileNotFoundError(f"mammo_folder: label file {str(csv_path)!r} not found (columns "
                                f"path,label[,lesion_type][,split]; paths relative to data_root)")
    rows = _read_label_csv(csv_path)

    from ..core.runtime import progress

    images, kept, skipped = [], [], []
    for row in progress(rows, desc="mammo_folder", total=len(rows)):
        file = root / row["path"]
        try:
            images.append(_fit_square(_read_mammogram(file), image_size, resize))
            kept.append(row)
        except _BadImage as e:
            where = f"{row['path']!r} ({csv_path.name} line {row['line']}, {file})"
            if not skip_bad:
                cls = FileNotFoundError if str(e) == "file not found" else ValueError
                raise cls(f"mammo_folder: cannot load {where}: {e}") from None
            skipped.append({"path": row["path"], "line": row["line"], "reason": str(e)})
    if skipped:
        warnings.warn(f"mammo_folder: skipped {len(skipped)} of {len(rows)} files that could not "
                      f"be read (first: {skipped[0]['path']!r}: {skipped[0]['reason']}); "
                      f"see bundle.info['skipped']", stacklevel=3)
    if not kept:
        raise ValueError(f"mammo_folder: none of the {len(rows)} files in {csv_path} could be read")

    x = torch.stack(images)
    y = torch.tensor([r["label"] for r in kept], dtype=torch.long)
    if all("split" in r for r in kept):
        te = np.array([i for i, r in enumerate(kept) if r["split"] == "test"], dtype=np.int64)
        tr = np.array([i for i, r in enumerate(kept) if r["split"] == "train"], dtype=np.int64)
    else:
        tr, te = _stratified_split(y.numpy(), test_fraction, seed)
    extras: dict[str, Any] = {"path": [r["path"] for r in kept]}
    if all("lesion_type" in r for r in kept):
        extras["lesion_type"] = torch.tensor([r["lesion_type"] for r in kept], dtype=torch.long)
    full = Split(x, y, extras)
    n_cls = int(y.max()) + 1
    classes = ["normal", "lesion"] if n_cls <= 2 else [str(i) for i in range(n_cls)]
    spec = {"name": "mammo_folder", "data_root": str(root), "csv": str(csv_path),
            "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
            "image_size": image_size, "resize": resize, "skip_bad": skip_bad,
            "test_fraction": test_fraction, "seed": seed}
    return DataBundle(name="mammo_folder", spec=spec, train=full.subset(tr), test=full.subset(te),
                      classes=classes, info={"skipped": skipped, "n_listed": len(rows)})


