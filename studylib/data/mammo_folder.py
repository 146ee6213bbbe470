"""``mammo_folder``: the user's own mammograms (PNG, JPEG 2000 or DICOM) listed in a CSV file.

Decoding: DICOM through its modality and VOI transforms, scaled by the range those give (from
``BitsStored`` when there is no LUT); a bitmap by its bit depth: declared (``bits=12``), else the
PNG's ``sBIT`` chunk, else its container (8 or 16 bits), with a warning when 16-bit files hold
values that fit in 14 bits or fewer (12-bit data divided by 65535 reaches 0.0625 at most, which
makes an absolute attack budget 16 times too strong). Each decoded and fitted image is cached by
the SHA-256 of its file and the decoding options (under the cache root, ``decoded/``), so a rerun
does not decode thousands of full-field mammograms again.
"""

from __future__ import annotations

import csv
import hashlib
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .bundle import (
    DataBundle,
    DataSetCheck,
    Split,
    _check_choice,
    _check_fraction,
    _check_int,
    _content_digest,
    _resize,
    _stratified_split,
)

# Bump when decoding or fitting changes its output, so cached decoded images are rebuilt.
_DECODE_VERSION = 1

_LAYOUT = ("<data root>/mammograms/ (or data_root) holding the images and a CSV with a header "
           "and columns path,label[,lesion_type][,split][,mask]; paths relative to that folder")
_HOW_TO_GET = ("mammograms cannot be downloaded by the kit: export CBIS-DDSM, INbreast or "
               "VinDr-Mammo images (PNG, JPEG 2000 or DICOM) and write the CSV yourself")


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


def _voi_lut_table(ds: Any) -> tuple[int, np.ndarray] | None:
    """``(first_mapped, table)`` of the first VOI LUT in ``ds``, or None when it has none."""
    voi = ds.get("VOILUTSequence")
    if not voi or voi[0].get("LUTDescriptor") is None or "LUTData" not in voi[0]:
        return None
    n, first, _bits = (int(v) for v in voi[0].LUTDescriptor)
    n = n or 2**16  # PS3.3 C.11.2.1.1: 0 means 65536 entries
    data = voi[0].LUTData
    if isinstance(data, (bytes, bytearray)):  # VR OW: 16-bit words, little endian
        table = np.frombuffer(bytes(data), dtype="<u2")[:n]
    else:
        table = np.atleast_1d(np.asarray(list(data) if hasattr(data, "__iter__") else data))
    if first > 2**15 and int(ds.get("PixelRepresentation", 0)) == 1:
        first -= 2**16  # a signed first value written as US
    return first, table.astype(np.int64)


def _apply_voi_lut_table(arr: np.ndarray, first: int, table: np.ndarray) -> np.ndarray:
    """A VOI LUT lookup (PS3.3 C.11.2.1.1): values below ``first`` take the first entry, above
    the last mapped value the last. Done here in int64, since pydicom 3.0's ``apply_voi_lut``
    indexes with the LUT's own dtype and so wraps 12-bit values through an 8-bit LUT."""
    index = np.clip(np.rint(np.asarray(arr, dtype=np.float64)) - first, 0, len(table) - 1)
    return table[index.astype(np.int64)]


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
    lut = _voi_lut_table(ds)
    arr = apply_modality_lut(arr, ds)
    arr = _apply_voi_lut_table(arr, *lut) if lut is not None else apply_voi_lut(arr, ds)
    x = np.clip((np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        x = 1.0 - x  # MONOCHROME1: low values are bright; flip so dense tissue is bright
    return x


@dataclass
class _Decoded:
    """A decoded image: ``x`` 2-D float64 in [0, 1]; for a bitmap scaled from a 16-bit
    container by 65535 without a declared or recorded depth, ``raw_max`` is its largest stored
    value (the evidence for a narrower depth), else None."""

    x: np.ndarray
    raw_max: int | None = None


def _png_sbit(path: Path) -> int | None:
    """The grey channel's significant bits from a PNG's ``sBIT`` chunk, or None (not a PNG,
    no chunk), read from the file since Pillow does not expose it."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"sBIT":
                    body = f.read(length)
                    return int(body[0]) if body else None
                if kind in (b"IDAT", b"IEND"):
                    return None
                f.seek(length + 4, 1)  # chunk data and CRC
    except OSError:
        return None


def _read_bitmap(path: Path, bits: int | None = None) -> _Decoded:
    """A grayscale bitmap (PNG, JPEG 2000, TIFF, ...) scaled to [0, 1] by ``2^bits - 1``:
    ``bits`` as declared, else the PNG's sBIT, else the container's depth (8 or 16)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "F":
                return _Decoded(np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0))
            if mode.startswith("I;16") or mode == "I":  # PNGs with 16-bit samples come as "I"
                arr = np.asarray(im, dtype=np.float64)
                container = 16
            else:
                if mode != "L":
                    im = im.convert("L")
                arr = np.asarray(im, dtype=np.float64)
                container = 8
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _BadImage(f"not a readable image ({type(e).__name__}: {e})") from e
    # a declared or recorded depth narrows a 16-bit container only: 8-bit files stay 8-bit
    depth = (bits or _png_sbit(path) or 16) if container == 16 else 8
    raw_max = int(arr.max()) if depth == 16 and arr.size else None
    return _Decoded(np.clip(arr / float(2**depth - 1), 0.0, 1.0), raw_max)


def _read_mammogram(path: Path, bits: int | None = None) -> _Decoded:
    """A 2-D image in [0, 1] from a bitmap (scaled by its bit depth, see :func:`_read_bitmap`)
    or a DICOM file (modality LUT, VOI LUT/window, MONOCHROME1 inverted; ``bits`` is ignored:
    the file's BitsStored and LUTs define its range)."""
    if not path.is_file():
        raise _BadImage("file not found" if not path.exists() else "not a regular file")
    d = _Decoded(_read_dicom(path)) if _is_dicom(path) else _read_bitmap(path, bits)
    if d.x.ndim != 2 or min(d.x.shape) < 1:
        raise _BadImage(f"expected a 2-D grayscale image, got shape {d.x.shape}")
    return d


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


def _fit_mask(m: np.ndarray, size: int, how: str) -> torch.Tensor:
    """A lesion mask ``(1, size, size)`` in {0, 1} with the geometry of :func:`_fit_square`:
    a pixel is set when any mask pixel falls in it (adaptive max pooling when shrinking,
    nearest neighbour when enlarging), so a calcification a few pixels wide survives the
    downscaling of a full-field mammogram."""
    t = torch.as_tensor(m > 0, dtype=torch.float32)
    if how == "crop":
        return _fit_square(t.numpy(), size, "crop").gt(0).float()
    h, w = t.shape
    if how == "pad" and h != w:
        side = max(h, w)
        sq = torch.zeros(side, side)
        sq[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = t
        t = sq
    t = t.view(1, 1, *t.shape)
    # each axis on its own: shrink by max pooling, enlarge by nearest neighbour
    rows = F.adaptive_max_pool2d(t, (size, t.shape[-1])) if t.shape[-2] >= size else \
        F.interpolate(t, size=(size, t.shape[-1]), mode="nearest")
    out = F.adaptive_max_pool2d(rows, (size, size)) if rows.shape[-1] >= size else \
        F.interpolate(rows, size=(size, size), mode="nearest")
    return out[0]


def _read_label_csv(csv_path: Path) -> list[dict[str, Any]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in fields]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; the CSV needs "
                             f"path,label and optionally lesion_type, split and mask "
                             f"(found {fields})")
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
            if "mask" in fields:
                out["mask"] = row.get("mask", "")  # empty: no lesion pixels marked
            rows.append(out)
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    return rows


def _mammo_root(data_root: str | None) -> Path:
    from ..core import paths

    return paths.resolve_data(data_root, "mammograms")


def check_mammo_folder(data_root: str | None = None, csv: str = "labels.csv") -> DataSetCheck:
    """Whether the mammogram folder, its CSV and every image and mask it lists exist (files
    only: nothing is decoded). A listed mask that is absent is a problem too, since the loader
    would fail on it."""
    root = _mammo_root(data_root)
    problems: list[str] = []
    if not root.is_dir():
        problems.append(f"{root} is not a folder")
    else:
        csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
        if not csv_path.is_file():
            problems.append(f"missing the label file {csv_path.name}")
        else:
            try:
                rows = _read_label_csv(csv_path)
            except ValueError as e:
                problems.append(str(e))
                rows = []
            for col in ("path", "mask"):
                absent = [r for r in rows if r.get(col) and not (root / r[col]).is_file()]
                if absent:
                    problems.append(f"{len(absent)} of {len(rows)} {col} file(s) listed in "
                                    f"{csv_path.name} are absent (first: {absent[0][col]!r}, "
                                    f"line {absent[0]['line']})")
    return DataSetCheck(name="mammo_folder", path=str(root), found=not problems,
                        problems=problems, notes=[], layout=_LAYOUT, how_to_get=_HOW_TO_GET)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _decode_row(file: Path, mask_file: Path | None, image_size: int, resize: str,
                bits: int | None, use_cache: bool) -> dict[str, Any]:
    """The fitted image (and mask) of one CSV row, from the cache of decoded images when it
    holds this file's content decoded with these options, else decoded and cached.

    Returns ``{"x": (1,S,S), "raw_max": int or -1, "mask": (1,S,S) or absent}``.
    Raises _BadImage for a missing or undecodable file.
    """
    from ..core import cache, io, paths

    def build() -> dict[str, Any]:
        d = _read_mammogram(file, bits)
        out = {"x": _fit_square(d.x, image_size, resize),
               "raw_max": -1 if d.raw_max is None else int(d.raw_max)}
        if mask_file is not None:
            out["mask"] = _fit_mask(_read_mammogram(mask_file).x, image_size, resize)
        return out

    if not file.is_file():
        raise _BadImage("file not found" if not file.exists() else "not a regular file")
    if mask_file is not None and not mask_file.is_file():
        raise _BadImage(f"mask file {str(mask_file)!r} not found")
    if not use_cache:
        return build()
    key = {"what": "mammo_folder decoded image", "version": _DECODE_VERSION,
           "file_sha256": _file_sha256(file), "image_size": image_size, "resize": resize,
           "bits": bits}
    if mask_file is not None:
        key["mask_sha256"] = _file_sha256(mask_file)
    path = paths.cache_root() / "decoded" / f"{io.cache_key(key)}.pt"
    value, _ = cache.load_or_build(path, build, what="decoded mammogram",
                                   check=lambda e: isinstance(e, dict) and "x" in e)
    return value


def _load_mammo_folder(data_root: str | None = None, csv: str = "labels.csv",
                       image_size: int = 512, resize: str = "resize", skip_bad: bool = False,
                       test_fraction: float = 0.2, seed: int = 0, bits: int | None = None,
                       cache_decoded: bool = True) -> DataBundle:
    """The user's own mammograms: PNG (8 or 16 bit), JPEG 2000 or DICOM files listed in a CSV.

    The CSV has a header and columns ``path,label`` and optionally ``lesion_type`` (0 none,
    1 calcification, 2 mass, or your own coding), ``split`` (``train``/``test``; without it
    the split is stratified by label with ``test_fraction`` and ``seed``) and ``mask`` (a lesion
    mask image per row, nonzero on lesion pixels, as CBIS-DDSM and INbreast ship them; empty for
    none). Paths are relative to the mammogram folder. Pixels are scaled to [0, 1]: a bitmap
    by ``2^bits - 1`` (``bits`` declared, else the PNG's sBIT chunk, else 8 or 16 from the
    file); DICOM through ``apply_modality_lut`` then ``apply_voi_lut`` (window or VOI LUT),
    divided by that output's value range (``BitsStored`` when there is no LUT), MONOCHROME1
    inverted so dense tissue is bright.

    Args:
        data_root: the folder of the images and the CSV. None (default): ``mammograms`` under
            the data root (``$STUDYLIB_DATA``, which ``run --data-root`` sets); a relative path
            is taken from the data root, an absolute one as it is.
        csv: the CSV file name inside the folder (or an absolute path). Default "labels.csv".
        image_size: side of the returned square images. Default 512.
        resize: "resize" (stretch to a square), "pad" (zero-pad to a square, then resize) or
            "crop" (centre crop at native resolution). Default "resize".
        skip_bad: False (default): a missing or unreadable file raises an error naming the file,
            its CSV line and the reason. True: such files are skipped with one warning that
            counts them (listed in ``bundle.info["skipped"]``).
        test_fraction, seed: the stratified split when the CSV has no ``split`` column.
        bits: the bit depth of 16-bit bitmaps (e.g. 12 for 12-bit data stored in 16-bit PNGs);
            None (default): the PNG's sBIT chunk, else 16, with a warning when every such file
            fits in 14 bits or fewer. Ignored for DICOM and 8-bit files.
        cache_decoded: keep each fitted image under the cache root, keyed by the file's
            SHA-256 and these options (default True; not part of ``spec``).

    Extras: ``"path"`` (list of CSV paths), ``"lesion_type"`` (int64, when the CSV has it),
    ``"mask"`` (float (N,1,S,S) in {0, 1}, when the CSV has a mask column; zeros for rows
    without one) and ``"calc_mask"`` (the mask of the calcification rows, lesion_type 1: its
    connected components are the specks of study 02's CNR analysis).
    ``spec["content_sha256"]`` digests the images, masks, labels and split.
    """
    image_size = _check_int("image_size", image_size, 8)
    resize = _check_choice("resize", resize, ("resize", "pad", "crop"))
    if not isinstance(skip_bad, bool):
        raise ValueError(f"skip_bad must be true or false, got {skip_bad!r}")
    if not isinstance(cache_decoded, bool):
        raise ValueError(f"cache_decoded must be true or false, got {cache_decoded!r}")
    if bits is not None:
        bits = _check_int("bits", bits, 1)
        if bits > 16:
            raise ValueError(f"bits must be at most 16, got {bits}")
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
    root = _mammo_root(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"mammo_folder: {str(root)!r} is not a folder; put your images "
                                f"and {csv} there or pass data_root=... (relative paths are "
                                f"taken from the data root). Check with `python -m studylib "
                                f"data check`.")
    csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
    if not csv_path.is_file():
        raise FileNotFoundError(f"mammo_folder: label file {str(csv_path)!r} not found (columns "
                                f"path,label[,lesion_type][,split][,mask]; paths relative to "
                                f"{str(root)!r})")
    rows = _read_label_csv(csv_path)
    has_mask = any("mask" in r for r in rows)

    from ..core.runtime import progress

    images, masks, kept, skipped, raw_max = [], [], [], [], []
    for row in progress(rows, desc="mammo_folder", total=len(rows)):
        file = root / row["path"]
        mask_file = root / row["mask"] if row.get("mask") else None
        try:
            d = _decode_row(file, mask_file, image_size, resize, bits, cache_decoded)
        except _BadImage as e:
            where = f"{row['path']!r} ({csv_path.name} line {row['line']}, {file})"
            if not skip_bad:
                missing = str(e) == "file not found" or str(e).startswith("mask file")
                cls = FileNotFoundError if missing else ValueError
                raise cls(f"mammo_folder: cannot load {where}: {e}") from None
            skipped.append({"path": row["path"], "line": row["line"], "reason": str(e)})
            continue
        images.append(d["x"])
        if has_mask:
            masks.append(d.get("mask", torch.zeros(1, image_size, image_size)))
        raw_max.append(int(d["raw_max"]))
        kept.append(row)
    if skipped:
        warnings.warn(f"mammo_folder: skipped {len(skipped)} of {len(rows)} files that could not "
                      f"be read (first: {skipped[0]['path']!r}: {skipped[0]['reason']}); "
                      f"see bundle.info['skipped']", stacklevel=3)
    if not kept:
        raise ValueError(f"mammo_folder: none of the {len(rows)} files in {csv_path} could be read")
    wide = [m for m in raw_max if m >= 0]
    if wide and max(wide) < 2**14:
        need = max(int(max(wide)).bit_length(), 1)
        warnings.warn(f"mammo_folder: {len(wide)} 16-bit image(s) were scaled by 65535, but "
                      f"their largest value is {max(wide)}: they look like {need}-bit data "
                      f"(brightest pixel {max(wide) / 65535:.3g} after scaling, so an absolute "
                      f"attack eps is {65535 / (2**need - 1):.0f} times stronger than meant). "
                      f"Pass bits={need} (data_kwargs) if that is their depth.", stacklevel=3)

    x = torch.stack(images)
    y = torch.tensor([r["label"] for r in kept], dtype=torch.long)
    if all("split" in r for r in kept):
        te = np.array([i for i, r in enumerate(kept) if r["split"] == "test"], dtype=np.int64)
        tr = np.array([i for i, r in enumerate(kept) if r["split"] == "train"], dtype=np.int64)
    else:
        tr, te = _stratified_split(y.numpy(), test_fraction, seed)
    extras: dict[str, Any] = {"path": [r["path"] for r in kept]}
    digest_parts: list[Any] = [x, y, tr, te]
    if all("lesion_type" in r for r in kept):
        extras["lesion_type"] = torch.tensor([r["lesion_type"] for r in kept], dtype=torch.long)
        digest_parts.append(extras["lesion_type"])
    if has_mask:
        extras["mask"] = torch.stack(masks)
        digest_parts.append(extras["mask"])
        if "lesion_type" in extras:
            calc = (extras["lesion_type"] == 1).float().view(-1, 1, 1, 1)
            extras["calc_mask"] = extras["mask"] * calc
    full = Split(x, y, extras)
    n_cls = int(y.max()) + 1
    classes = ["normal", "lesion"] if n_cls <= 2 else [str(i) for i in range(n_cls)]
    spec = {"name": "mammo_folder", "data_root": str(root), "csv": str(csv_path),
            "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
            "content_sha256": _content_digest(*digest_parts),
            "image_size": image_size, "resize": resize, "skip_bad": skip_bad,
            "test_fraction": test_fraction, "seed": seed, "bits": bits}
    return DataBundle(name="mammo_folder", spec=spec, train=full.subset(tr), test=full.subset(te),
                      classes=classes, info={"skipped": skipped, "n_listed": len(rows)})
