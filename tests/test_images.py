"""load_image: every input mode becomes RGB uint8; bad files give one-line BadInputError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tgsr.data.images import list_images, load_image, save_png
from tgsr.errors import BadInputError


def _rgb(h=12, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path):
    img = _rgb()
    save_png(tmp_path / "a" / "x.png", img)
    out = load_image(tmp_path / "a" / "x.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    assert np.array_equal(out, img)


def test_save_png_is_deterministic(tmp_path):
    img = _rgb(seed=1)
    save_png(tmp_path / "a.png", img)
    save_png(tmp_path / "b.png", img)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with pytest.raises(ValueError):
        save_png(tmp_path / "c.png", img.astype(np.float32))


def test_grey_is_replicated(tmp_path):
    g = np.arange(120, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (12, 10, 3) and all(np.array_equal(out[..., c], g) for c in range(3))


def test_sixteen_bit_grey_is_scaled(tmp_path):
    a = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out[0, :, 0].tolist() == [0, 1, 255, 128]


def test_palette_and_transparency_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 3].tolist() == [255, 255, 255]
    # palette with a transparent index
    p = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    p.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    p.info["transparency"] = 1
    p.save(tmp_path / "p.png", transparency=1)
    out = load_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]
    # half-transparent grey + alpha
    la = Image.fromarray(
        np.stack([np.full((2, 2), 0, np.uint8), np.full((2, 2), 128, np.uint8)], -1)
    )
    la.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png")[0, 0, 0] in (127, 128)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (6, 8, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60  # red


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("garbage.jpg", b"not an image at all", "not an image"),
        ("notes.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, ""),
    ],
)
def test_bad_files_one_line_error(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BadInputError) as info:
        load_image(tmp_path / name)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / name)) and "\n" not in msg and reason in msg


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadInputError, match="t.jpg: corrupt or truncated"):
        load_image(tmp_path / "t.jpg")


def test_missing_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(BadInputError):
        load_image(tmp_path)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    save_png(tmp_path / "big.png", _rgb(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadInputError, match="decompression-bomb limit"):
        load_image(tmp_path / "big.png")


def test_list_images_sorted(tmp_path):
    for n in ("b.png", "a.JPG", "c.txt", ".hidden.png"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
