"""Image files -> RGB uint8 arrays, and deterministic PNG writing.

:func:`load_image` accepts whatever Pillow reads and always returns ``uint8 (H, W, 3)`` RGB:

* grey (``L``, ``1``) is replicated to three channels; palette images go through their palette;
* alpha (``RGBA``, ``LA``, palette transparency) is **composited on white** (what a viewer
  shows for a transparent background; dropping it would expose arbitrary colours, often black,
  under transparent pixels);
* 16-bit grey (``I;16``, ``I``) is scaled to 8 bit by ``round(v / 257)`` (16-bit RGB PNGs are
  reduced to 8 bit by Pillow itself); 32-bit float (``F``) is read as [0, 1] when its maximum
  is <= 1, else as 0..255, and clipped; a float image holding NaN or infinite values is refused
  (there is no colour to give them);
* CMYK, YCbCr, LAB and HSV are converted with Pillow's ``convert("RGB")``;
* the EXIF orientation tag is applied, so the array matches what a viewer shows.

Any failure (missing, corrupt, truncated, unsupported file, an image above Pillow's
``Image.MAX_IMAGE_PIXELS`` decompression-bomb limit) raises :class:`BadInputError` with one line
``"<path>: <reason>"``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tgsr.errors import BadInputError
from tgsr.files import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

__all__ = [
    "IMAGE_EXTENSIONS",
    "image_size",
    "is_image_file",
    "list_images",
    "load_image",
    "save_png",
]


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and is_image_file(p) and not p.name.startswith(".")
    )


class NonFiniteImageError(BadInputError):
    """A float image holding NaN or infinite values."""


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        a = np.floor(np.clip(a, 0, 65535) / 257 + 0.5)
        return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise NonFiniteImageError(
                f"float image with {bad} NaN/infinite value(s) of {a.size}: refused "
                "(there is no colour for them; replace them first)"
            )
        if a.size and a.max() <= 1.0:
            a = a * 255
        a = np.floor(np.clip(a, 0, 255) + 0.5)
        return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Pillow's and the file system's exceptions -> one-line ``BadInputError("<path>: ...")``."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow's notes on damaged metadata ("Corrupt EXIF data", "Truncated File Read"):
            # the pixels decode or the error above says why; a raw warning is only noise
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            yield
    except NonFiniteImageError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    except BadInputError:
        raise
    except FileNotFoundError:
        raise BadInputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{path}: not an image, or a format Pillow cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(
            f"{path}: above the decompression-bomb limit of {limit} pixels ({_one_line(exc)}; "
            "raise PIL.Image.MAX_IMAGE_PIXELS to allow it)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: corrupt or truncated image ({_one_line(exc)})") from None


def _check_pixels(path: Path, img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        raise BadInputError(
            f"{path}: {w}x{h} pixels is above the decompression-bomb limit of "
            f"{limit} pixels (raise PIL.Image.MAX_IMAGE_PIXELS to allow it)"
        )
    return w, h


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`load_image` would return it (EXIF
    orientation applied), read from its header: nothing is decoded, so a file that is cut short
    after the header passes here and fails in :func:`load_image`. Same one-line errors."""
    path = Path(path)
    with _read_errors(path), Image.open(path) as img:
        w, h = _check_pixels(path, img)
        try:
            rotated = img.getexif().get(0x0112) in (5, 6, 7, 8)  # transposed orientations
        except Exception:  # noqa: BLE001 - a broken EXIF block: load_image keeps the pixels too
            rotated = False
    return (h, w) if rotated else (w, h)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB ``uint8 (H, W, 3)``; see the module docstring."""
    path = Path(path)
    with _read_errors(path), Image.open(path) as img:
        _check_pixels(path, img)
        img.load()
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
            pass
        out = _to_rgb(img)
    if out.ndim != 3 or out.shape[2] != 3 or min(out.shape[:2]) < 1:
        raise BadInputError(f"{path}: unsupported image layout {out.shape}")
    return out


def save_png(path: str | Path, img: np.ndarray) -> None:
    """Write ``uint8 (H, W, 3)`` (or ``(H, W)`` grey) as an 8-bit PNG; same array -> same bytes
    (no timestamps or text chunks). Parent folders are created; the file appears complete or
    not at all (written beside it, then renamed)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"save_png expects uint8 (H, W, 3) or (H, W), got {img.dtype} {img.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(np.ascontiguousarray(img))  # a kill mid-write leaves no half PNG
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG", compress_level=6))
