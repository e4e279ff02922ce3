"""Real captioned data sets, read in the layout their users have on disk
(docs/paper_vs_code.md R1, R8).

Every reader returns ``list[Record]``; :class:`CaptionedImageDataset` turns records into samples.
Class ids feed DAMSM's same-class masking (paper_vs_code.md R2): CUB and Oxford-102 use their
class folders; the other formats give every image its own id (no masking).

Layouts (``root`` = ``data.root``):

* ``cub``: ``CUB_200_2011/images/<class>/<name>.jpg``, ``text/<class>/<name>.txt`` (one caption
  a line), ``<split>/filenames.pickle`` (AttnGAN's protocol-2 list of ``"<class>/<name>"``, read
  without executing code) or ``<split>/filenames.txt`` (one name a line; a name listed twice is
  a bad entry). Optional
  ``CUB_200_2011/bounding_boxes.txt`` + ``images.txt`` for AttnGAN's box crop
  (paper_vs_code.md R8).
* ``oxford102``: ``jpg/image_XXXXX.jpg`` and ``text_c10/class_XXXXX/image_XXXXX.txt``. Split:
  per class, the caption files **sorted by name**, the last 3 are test and the rest train (the
  released code takes the last 3 in unsorted ``glob`` order, which depends on the file system).
  ``.`` and ``,`` are deleted and a ``{}`` line repeats the previous caption (paper_vs_code.md R1).
* ``coco``: ``annotations/captions_train2014.json`` (train) or ``captions_val2014.json``
  (val/test: COCO's test images have no captions; AttnGAN tests on val2014); the 2017 names are
  accepted too. Images in ``<root>/<train2014|val2014|...>/`` or ``<root>/images/<...>/``.
* ``celeba_hq``: ``images/<idx>.jpg`` + ``text/<idx>.txt`` (MM-CelebA-HQ). Split:
  ``<split>/filenames.pickle|txt`` if present, else sorted by index with the last 20 % as test
  (24,000 / 6,000 for the 30,000 images); ``val`` uses the test part.
* ``celeba_attr``: ``list_attr_celeba.txt`` (in the root, ``Anno/`` or ``text/``) in the official
  format (count line, header, ``-1``/``1``) or the released code's 0/1 format (header, ``0``/``1``).
  The caption is the positive attribute names in column order, case preserved (the vocabulary
  for this format does not lower-case). Split: ``list_eval_partition.txt`` if present
  (0 train, 1 val, 2 test), else the released rule: ``Blurry`` = 0 train, 1 val/test.
* ``folder``: images with same-named ``.txt`` caption files; ``<root>/<split>/`` if that folder
  exists, else ``root`` for every split. Images sharing a stem (``a.jpg`` + ``a.png``, one
  ``a.txt``) are a bad entry.
* ``jsonl``: ``root`` is a manifest, one ``{"image": path, "captions": [...]}`` per line
  (optional ``"key"``, ``"class_id"``, ``"split"``); relative paths resolve against the manifest's
  folder. Without ``"split"`` fields every line belongs to every split.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tgsr.config import DataConfig
from tgsr.data.images import list_images, load_image
from tgsr.data.recolour import recolour
from tgsr.data.sample import make_sample
from tgsr.errors import BadInputError, TGSRError
from tgsr.files import atomic_write
from tgsr.text import Vocabulary, tokenize

BBox = tuple[float, float, float, float]  # x, y, width, height (pixels)


@dataclass
class Record:
    key: str
    image_path: Path
    captions: list[str]
    class_id: int = 0
    bbox: BBox | None = None


class Skips:
    """Collects bad entries: raises at once, or (``skip_bad``) records ``"<file>: <reason>"``."""

    def __init__(self, skip_bad: bool, sink: list[str] | None = None):
        self.skip_bad = skip_bad
        self.messages = sink if sink is not None else []

    def __call__(self, error: BadInputError) -> None:
        if not self.skip_bad:
            raise error
        self.messages.append(str(error))


# ----------------------------------------------------------------------------- helpers


class _NoCodeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain lists")


def read_name_list(path: Path) -> list[str]:
    """A split list: AttnGAN's ``filenames.pickle`` (a list of str, read without executing code)
    or a text file with one name per line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".pickle":
        try:
            names = _NoCodeUnpickler(io.BytesIO(data), encoding="latin1").load()
        except Exception as exc:  # noqa: BLE001 - any malformed pickle is bad input
            reason = " ".join(str(exc).split())  # some pickle errors span two lines
            raise BadInputError(f"{path}: not a list-of-names pickle ({reason})") from None
        if not isinstance(names, list):
            raise BadInputError(f"{path}: expected a list of names, got {type(names).__name__}")
        names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
        if not all(isinstance(n, str) for n in names):
            raise BadInputError(f"{path}: expected a list of names (str)")
        return names
    text = data.decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def unique_names(names: list[str], names_file: Path, skips: Skips) -> list[str]:
    """``names`` without repeats (first kept); each repeat is a bad entry of ``names_file``
    (a split list naming an image twice would count and sample it twice)."""
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            skips(BadInputError(f"{names_file}: {name!r} is listed more than once"))
            continue
        seen.add(name)
        out.append(name)
    return out


def _find_split_list(folder: Path) -> Path | None:
    for name in ("filenames.pickle", "filenames.txt"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_captions(
    path: Path,
    limit: int | None = None,
    flowers: bool = False,
    lowercase: bool = True,
) -> list[str]:
    """Captions of one UTF-8 text file: one per non-empty line with at least one token (a file
    that is not valid UTF-8 is a bad entry, not decoded with replacement characters).

    ``flowers``: delete ``.`` and ``,`` first and repeat the previous caption for a ``{}`` line
    (Oxford-102's preprocessing). ``limit``: keep the first N captions.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: caption file not found") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read caption file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{path}: caption file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}); re-encode it as UTF-8"
        ) from None
    if flowers:
        text = text.replace(".", "").replace(",", "")
    caps: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if flowers and line == "{}" and caps:
            line = caps[-1]
        if line and tokenize(line, lowercase=lowercase):
            caps.append(line)
    if limit is not None:
        caps = caps[:limit]
    if not caps:
        raise BadInputError(f"{path}: no usable caption (empty file or no words)")
    return caps


def _check_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise BadInputError(f"{path}: {what} folder not found")
    return path


# ----------------------------------------------------------------------------- formats


def read_cub(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    names_file = _find_split_list(root / split)
    if names_file is None:
        raise BadInputError(f"{root / split}: no filenames.pickle or filenames.txt split list")
    images_dir = _check_dir(root / "CUB_200_2011" / "images", "CUB images")
    boxes = _read_cub_boxes(root / "CUB_200_2011")
    records = []
    names = [n.removesuffix(".jpg") for n in read_name_list(names_file)]
    for name in unique_names(names, names_file, skips):
        try:
            caps = read_captions(root / "text" / f"{name}.txt", limit)
            class_id = int(name.split("/", 1)[0].split(".", 1)[0])
        except BadInputError as exc:
            skips(exc)
            continue
        except ValueError:
            skips(BadInputError(f"{names_file}: {name!r} does not start with a class folder"))
            continue
        records.append(Record(name, images_dir / f"{name}.jpg", caps, class_id, boxes.get(name)))
    return records


def _read_cub_boxes(cub_dir: Path) -> dict[str, BBox]:
    boxes_file, images_file = cub_dir / "bounding_boxes.txt", cub_dir / "images.txt"
    if not (boxes_file.is_file() and images_file.is_file()):
        return {}
    ids = {}
    for line in images_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            ids[parts[0]] = parts[1].removesuffix(".jpg")
    boxes = {}
    for line in boxes_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] in ids:
            boxes[ids[parts[0]]] = tuple(float(v) for v in parts[1:])
    return boxes


def bbox_crop(img: np.ndarray, bbox: BBox) -> np.ndarray:
    """AttnGAN's crop: a square of half-side ``0.75 * max(w, h)`` around the box centre,
    clipped to the image (so it may be non-square)."""
    height, width = img.shape[:2]
    x, y, w, h = bbox
    r = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    y1, y2 = max(0, cy - r), min(height, cy + r)
    x1, x2 = max(0, cx - r), min(width, cx + r)
    if y2 <= y1 or x2 <= x1:
        return img
    return img[y1:y2, x1:x2]


def read_oxford102(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    if split == "val":
        raise TGSRError("oxford102 has train and test splits only (set data.eval_split=test)")
    text_dir = _check_dir(root / "text_c10", "Oxford-102 text_c10")
    records = []
    for class_dir in sorted(p for p in text_dir.iterdir() if p.is_dir()):
        try:
            class_id = int(class_dir.name.rsplit("_", 1)[-1])
        except ValueError:
            continue
        files = sorted(class_dir.glob("*.txt"))
        chosen = files[-3:] if split == "test" else files[:-3]
        for f in chosen:
            try:
                caps = read_captions(f, limit if limit is not None else 10, flowers=True)
            except BadInputError as exc:
                skips(exc)
                continue
            records.append(Record(f.stem, root / "jpg" / f"{f.stem}.jpg", caps, class_id))
    return records


def read_coco(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    years = ("train2014", "train2017") if split == "train" else ("val2014", "val2017")
    candidates = [root / d / f"captions_{y}.json" for y in years for d in ("annotations", ".")]
    ann_file = next((c for c in candidates if c.is_file()), None)
    if ann_file is None:
        raise BadInputError(f"{root}: no annotations/captions_{years[0]}.json (or {years[1]})")
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
        images = {int(im["id"]): im["file_name"] for im in data["images"]}
        annotations = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{ann_file}: not a COCO captions file ({exc})") from None
    year = ann_file.stem.split("_")[-1]
    image_dir = next((d for d in (root / year, root / "images" / year) if d.is_dir()), root / year)
    caps: dict[int, list[str]] = {}
    for ann in annotations:
        caps.setdefault(int(ann["image_id"]), []).append(" ".join(str(ann["caption"]).split()))
    records = []
    for image_id in sorted(caps):
        if image_id not in images:
            skips(BadInputError(f"{ann_file}: caption for unknown image id {image_id}"))
            continue
        usable = [c for c in caps[image_id] if tokenize(c)][:limit]
        file_name = images[image_id]
        if not usable:
            skips(BadInputError(f"{ann_file}: image {file_name} has no usable caption"))
            continue
        records.append(Record(Path(file_name).stem, image_dir / file_name, usable, len(records)))
    return records


def _index_sort_key(stem: str):
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def read_celeba_hq(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    images_dir = _check_dir(root / "images", "CelebA-HQ images")
    text_dir = _check_dir(root / "text", "MM-CelebA-HQ text")
    names_file = _find_split_list(root / split) or (
        _find_split_list(root / "test") if split == "val" else None
    )
    image_files = {p.stem: p for p in list_images(images_dir)}
    if names_file is not None:
        stems = unique_names([Path(n).stem for n in read_name_list(names_file)], names_file, skips)
    else:
        stems = sorted(image_files, key=_index_sort_key)
        n_test = -(-len(stems) // 5)  # ceil(20 %)
        stems = stems[len(stems) - n_test :] if split != "train" else stems[: len(stems) - n_test]
    records = []
    for stem in stems:
        try:
            caps = read_captions(text_dir / f"{stem}.txt", limit)
        except BadInputError as exc:
            skips(exc)
            continue
        path = image_files.get(stem, images_dir / f"{stem}.jpg")
        records.append(Record(stem, path, caps, len(records)))
    return records


def parse_celeba_attributes(path: Path) -> tuple[list[str], list[tuple[str, list[bool]]]]:
    """``list_attr_celeba.txt`` -> (attribute names, [(file name, positives)]).

    Accepts the official file (first line: the image count; values ``-1``/``1``, several spaces)
    and the released code's 0/1 file (no count line)."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if lines and lines[0].strip().isdigit():
        lines = lines[1:]
    if not lines:
        raise BadInputError(f"{path}: no attribute header")
    header = lines[0].split()
    rows = []
    for lineno, line in enumerate(lines[1:], start=3):
        parts = line.split()
        if len(parts) != len(header) + 1 or any(v not in ("-1", "0", "1") for v in parts[1:]):
            raise BadInputError(
                f"{path}: line {lineno}: expected a file name and {len(header)} values of -1/0/1"
            )
        rows.append((parts[0], [v == "1" for v in parts[1:]]))
    return header, rows


def read_celeba_attr(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    places = (root, root / "Anno", root / "text")
    attr_file = next(
        (p / "list_attr_celeba.txt" for p in places if (p / "list_attr_celeba.txt").is_file()), None
    )
    if attr_file is None:
        raise BadInputError(f"{root}: list_attr_celeba.txt not found (looked in ., Anno/, text/)")
    header, rows = parse_celeba_attributes(attr_file)
    partition_file = next(
        (
            p / "list_eval_partition.txt"
            for p in places
            if (p / "list_eval_partition.txt").is_file()
        ),
        None,
    )
    if partition_file is not None:
        wanted = {"train": "0", "val": "1", "test": "2"}[split]
        part = dict(
            ln.split()[:2] for ln in partition_file.read_text().splitlines() if len(ln.split()) >= 2
        )
        rows = [r for r in rows if part.get(r[0]) == wanted]
    elif "Blurry" in header:
        col = header.index("Blurry")
        rows = [r for r in rows if r[1][col] == (split != "train")]
    image_dir = _celeba_image_dir(root, rows[0][0] if rows else None)
    records = []
    for name, positives in rows:
        caption = " ".join(a for a, pos in zip(header, positives, strict=True) if pos)
        if not caption:
            skips(BadInputError(f"{attr_file}: {name} has no positive attribute (empty caption)"))
            continue
        path = image_dir / name
        if not path.is_file() and (image_dir / f"{Path(name).stem}.png").is_file():
            path = image_dir / f"{Path(name).stem}.png"
        records.append(Record(Path(name).stem, path, [caption], len(records)))
    return records


def _celeba_image_dir(root: Path, first: str | None) -> Path:
    dirs = [root / "img_align_celeba", root / "images", root / "Img", root]
    if first is not None:
        for d in dirs:
            if (d / first).is_file() or (d / f"{Path(first).stem}.png").is_file():
                return d
    return next((d for d in dirs if d.is_dir()), root)


def read_folder(root: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    folder = root / split if (root / split).is_dir() else _check_dir(root, "image")
    images = list_images(folder)
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        by_stem.setdefault(path.stem, []).append(path)
    records = []
    for path in images:
        same = by_stem[path.stem]
        if len(same) > 1:  # img0.jpg + img0.png would share img0.txt: which one is meant?
            if path == same[0]:
                names = ", ".join(p.name for p in same)
                skips(BadInputError(f"{folder}: {names} share one caption file {path.stem}.txt"))
            continue
        try:
            caps = read_captions(path.with_suffix(".txt"), limit)
        except BadInputError as exc:
            skips(exc)
            continue
        records.append(Record(path.stem, path, caps, len(records)))
    return records


def read_jsonl(manifest: Path, split: str, limit: int | None, skips: Skips) -> list[Record]:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInputError(f"{manifest}: cannot read manifest ({exc.strerror})") from None
    entries = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                raise ValueError('needs an "image" path')
            caps = entry.get("captions")
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise ValueError('"captions" must be a list of strings')
            cid = entry.get("class_id", 0)
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise ValueError('"class_id" must be an integer')
            if not isinstance(entry.get("key", ""), (str, int)):
                raise ValueError('"key" must be a string')
        except ValueError as exc:
            skips(BadInputError(f"{manifest}:{lineno}: invalid manifest line ({exc})"))
            continue
        entries.append((lineno, entry))
    if any("split" in e for _, e in entries):
        entries = [(n, e) for n, e in entries if e.get("split") == split]
    records = []
    for lineno, entry in entries:
        caps = [c.strip() for c in entry["captions"] if tokenize(c)][:limit]
        if not caps:
            skips(BadInputError(f"{manifest}:{lineno}: no usable caption for {entry['image']}"))
            continue
        path = Path(entry["image"])
        path = path if path.is_absolute() else manifest.parent / path
        key = str(entry.get("key", Path(entry["image"]).with_suffix("").as_posix()))
        records.append(Record(key, path, caps, int(entry.get("class_id", len(records)))))
    return records


# ----------------------------------------------------------------------------- dataset


# The floor for real images: one that fits inside a 32x32 square (longer side below 32 px), or a
# strip thinner than 8 px, is bad input; anything larger is resized to the load size, up or down.
MIN_IMAGE_SIDE = 32
MIN_SHORT_SIDE = 8


def load_size(hr_size: int, load_ratio: float) -> int:
    """The shorter side every image is resized to before the crop: ``int(hr_size * load_ratio)``
    (AttnGAN: ``int(256 * 76 / 64) = 304``), at least ``hr_size``."""
    return max(hr_size, int(hr_size * load_ratio))


def resize_shorter_side(img: np.ndarray, target: int) -> np.ndarray:
    """Resize ``uint8 (H, W, 3)`` so that its shorter side is ``target``, up **or** down, keeping
    the aspect ratio (longer side rounded, at least ``target``). Pillow's bicubic filter, which is
    antialiased when shrinking (AttnGAN's loaders resize with Pillow too)."""
    h, w = img.shape[:2]
    if min(h, w) == target:
        return img
    s = target / min(h, w)
    new_h, new_w = (
        (target, max(target, round(w * s))) if h <= w else (max(target, round(h * s)), target)
    )
    out = Image.fromarray(np.ascontiguousarray(img)).resize((new_w, new_h), Image.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def below_floor(h: int, w: int) -> bool:
    return max(h, w) < MIN_IMAGE_SIDE or min(h, w) < MIN_SHORT_SIDE


def check_floor(img: np.ndarray, name: str) -> None:
    h, w = img.shape[:2]
    if below_floor(h, w):
        raise BadInputError(
            f"{name}: image {w}x{h} is below the floor for real images (longer side "
            f"{MIN_IMAGE_SIDE} px, shorter side {MIN_SHORT_SIDE} px)"
        )


def crop(img: np.ndarray, size: int, crop_at: tuple[float, float] | None) -> np.ndarray:
    """A ``size`` square: ``crop_at`` = ``(y, x)`` in [0, 1) picks the offset uniformly over the
    valid ones (training draws them at random); ``None`` = centre crop."""
    h, w = img.shape[:2]
    if crop_at is None:
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top = min(h - size, int(crop_at[0] * (h - size + 1)))
        left = min(w - size, int(crop_at[1] * (w - size + 1)))
    return img[top : top + size, left : left + size]


def prepare_image(
    img: np.ndarray,
    hr_size: int,
    load_ratio: float,
    crop_at: tuple[float, float] | None,
    name: str,
) -> np.ndarray:
    """The paper's protocol (§4.1; paper_vs_code.md R8): resize the shorter side to
    ``load_size(hr_size, load_ratio)``, up or down, then crop ``hr_size`` (``crop_at``: see
    :func:`crop`). Only an image below the floor (:func:`below_floor`) is bad input."""
    check_floor(img, name)
    return crop(resize_shorter_side(img, load_size(hr_size, load_ratio)), hr_size, crop_at)


def _save_npy(path: str, img: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(img), allow_pickle=False)


def default_cache_dir() -> Path:
    """``$TGSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/tgsr``, else ``~/.cache/tgsr``."""
    if os.environ.get("TGSR_CACHE_DIR"):
        return Path(os.environ["TGSR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "tgsr"


class DecodeCache:
    """The resized decode of every image, so that epochs after the first read a small ``.npy``
    instead of decoding (and resizing) a full photograph.

    Folder: ``<cache_dir>/decoded/<sha1(data root, format)[:16]>-<size>/`` (one per data set and
    resize size; ``cache_dir`` = ``data.cache_dir`` or :func:`default_cache_dir`). One file per
    image, named by a hash of the image's absolute path, byte size, modification time, box and
    size, so an edited image is decoded again. Files are written to a temporary name and renamed
    (atomic on one file system): DataLoader workers and concurrent runs can share a cache, and an
    interrupted write leaves no partial file. An unreadable cache file is decoded again. Disk use
    is ``3 * size * longer side`` bytes per image (about 0.37 MB for 304 px).
    """

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def for_data(cls, data_cfg: DataConfig, size: int) -> DecodeCache | None:
        if not data_cfg.cache or not data_cfg.root:
            return None
        base = Path(data_cfg.cache_dir).expanduser() if data_cfg.cache_dir else default_cache_dir()
        root = str(Path(data_cfg.root).expanduser().resolve())
        tag = hashlib.sha1(f"{root}|{data_cfg.format}".encode()).hexdigest()[:16]
        return cls(base / "decoded" / f"{tag}-{size}")

    def _file(self, path: Path, extra: str) -> Path | None:
        try:
            st = path.stat()
        except OSError:
            return None  # the decode reports the missing file
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{extra}"
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.npy"

    def get(self, path: Path, extra: str, make) -> np.ndarray:
        file = self._file(path, extra)
        if file is not None and file.is_file():
            try:
                img = np.load(file, allow_pickle=False)
                if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
                    return img
            except (OSError, ValueError, EOFError):
                pass  # a damaged cache file: decode again and replace it
        img = make()
        if file is not None:
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(file, lambda tmp: _save_npy(tmp, img))
            except OSError:
                pass  # a read-only or full disk: run without the cache
        return img


def decode_resized(rec: Record, data_cfg: DataConfig, size: int) -> np.ndarray:
    """Decode ``rec``, crop around its box (CUB, ``data.bbox_crop``), check the floor, resize the
    shorter side to ``size``. A box crop below the floor falls back to the whole image."""
    img = load_image(rec.image_path)
    check_floor(img, str(rec.image_path))
    if rec.bbox is not None and data_cfg.bbox_crop:
        boxed = bbox_crop(img, rec.bbox)
        if not below_floor(*boxed.shape[:2]):
            img = boxed
    return resize_shorter_side(img, size)


class CaptionedImageDataset(Dataset):
    """Records -> samples (``tgsr.data.sample.make_sample``).

    Training: a random caption per draw, a random ``hr_size`` crop of the image (box-cropped for
    CUB) resized to ``load_size(hr_size, load_ratio)`` on its shorter side, up or down, a
    horizontal flip with p = 0.5, and with p = ``data.lq_colour_drop`` an LR whose chroma is
    scaled by a random factor in [0, 1) (the caption then carries the colour), and with
    p = ``data.recolour`` a caption-consistent recolouring (:mod:`tgsr.data.recolour`; with
    ``data.recolour_loss_weight`` ≠ 1 every training sample carries a ``"weight"`` map);
    randomness comes from torch's RNG, which the DataLoader seeds per worker. Evaluation: caption 0, the same resize, centre crop. The resized decode is cached
    (:class:`DecodeCache`, ``data.cache``).
    A bad image raises :class:`BadInputError` naming the file; with ``data.skip_bad`` it is
    recorded once in :attr:`skipped` and the next good record is used instead (skips counted inside
    DataLoader worker processes stay in those processes).
    """

    def __init__(
        self,
        records: list[Record],
        vocab: Vocabulary,
        data_cfg: DataConfig,
        train: bool,
        skipped: list[str] | None = None,
    ):
        if not records:
            raise TGSRError(f"no usable images in {data_cfg.root} (format {data_cfg.format})")
        self.records = records
        self.vocab = vocab
        self.cfg = data_cfg
        self.train = train
        self.skipped: list[str] = list(skipped or [])
        self._bad: set[int] = set()
        self._cache = DecodeCache.for_data(
            data_cfg, load_size(data_cfg.hr_size, data_cfg.load_ratio)
        )

    def __len__(self) -> int:
        return len(self.records)

    def decoded(self, index: int) -> np.ndarray:
        """Record ``index`` decoded, box-cropped and resized (from the cache when present)."""
        rec = self.records[index]
        size = load_size(self.cfg.hr_size, self.cfg.load_ratio)
        if self._cache is None:
            return decode_resized(rec, self.cfg, size)
        box = rec.bbox if self.cfg.bbox_crop else None
        return self._cache.get(
            rec.image_path, f"{box}|{size}", lambda: decode_resized(rec, self.cfg, size)
        )

    def load(self, index: int) -> dict:
        rec = self.records[index]
        img = self.decoded(index)
        if self.train:
            fy, fx, flip, k, seed = torch.rand(3).tolist() + torch.randint(0, 2**62, (2,)).tolist()
            img = crop(img, self.cfg.hr_size, (fy, fx))
            if flip < 0.5:
                img = img[:, ::-1]
            caption = rec.captions[k % len(rec.captions)]
            rng: random.Random | None = random.Random(seed)
            colour, target, mask = 1.0, None, None  # mask: the recoloured pixels
            if self.cfg.lq_colour_drop > 0:  # drawn only when on: other runs keep their streams
                drop, amount = torch.rand(2).tolist()
                colour = amount if drop < self.cfg.lq_colour_drop else 1.0
            if self.cfg.recolour > 0:  # likewise
                draw, seed2 = torch.rand(1).item(), int(torch.randint(0, 2**62, (1,)))
                if draw < self.cfg.recolour:
                    img = np.ascontiguousarray(img)
                    edit = recolour(img, caption, self.vocab.index.keys(), random.Random(seed2),
                                    self.cfg.scale, self.cfg.recolour_lr_psnr,
                                    self.cfg.recolour_max_cover, self.cfg.degradation)  # fmt: skip
                    if edit is not None:
                        target, caption, mask = edit[0], edit[1], edit[4]
        else:
            img = crop(img, self.cfg.hr_size, None)
            caption, rng, colour, target, mask = rec.captions[0], None, 1.0, None, None
        sample = make_sample(np.ascontiguousarray(img), caption, self.vocab, self.cfg, rng,
                             rec.key, rec.class_id, lq_colour=colour, target=target)  # fmt: skip
        if self.train and self.cfg.recolour > 0 and self.cfg.recolour_loss_weight != 1.0:
            weight = torch.ones(1, *sample["gt"].shape[-2:])
            if mask is not None:
                weight = weight + (self.cfg.recolour_loss_weight - 1.0) * mask[None]
            sample["weight"] = weight
        return sample

    def __getitem__(self, index: int) -> dict:
        n = len(self.records)
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self._bad:
                continue
            try:
                return self.load(i)
            except BadInputError as exc:
                if not self.cfg.skip_bad:
                    raise
                self._bad.add(i)  # each bad file is reported once and not retried
                self.skipped.append(str(exc))
        raise TGSRError(f"every image in {self.cfg.root} failed to load")
