"""Tiny on-disk fixtures of every real data-set layout (built in ``tmp_path`` by the tests)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

HR = 32  # hr_size used with these fixtures (multiple of 16 and of scale 4)


def write_image(
    path: Path, h: int = 40, w: int = 48, seed: int = 0, fmt: str | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(path, format=fmt)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def bird_captions(name: str, n: int = 10) -> list[str]:
    return [f"this bird {name} has a red crown number {i}" for i in range(n)]


def make_cub(root: Path) -> dict:
    train = [
        "001.Black_footed_Albatross/Black_Footed_Albatross_0001_1",
        "001.Black_footed_Albatross/Black_Footed_Albatross_0002_2",
    ]
    test = [
        "002.Laysan_Albatross/Laysan_Albatross_0003_3",
        "002.Laysan_Albatross/Laysan_Albatross_0004_4",
        "002.Laysan_Albatross/Laysan_Albatross_0005_5",
    ]
    for i, name in enumerate(train + test):
        write_image(root / "CUB_200_2011" / "images" / f"{name}.jpg", 60, 80, seed=i)
        write_lines(root / "text" / f"{name}.txt", bird_captions(f"b{i}"))
    (root / "train").mkdir(parents=True)
    with open(root / "train" / "filenames.pickle", "wb") as f:
        pickle.dump(train, f, protocol=2)
    write_lines(root / "test" / "filenames.txt", test)
    names = train + test
    write_lines(
        root / "CUB_200_2011" / "images.txt", [f"{i + 1} {n}.jpg" for i, n in enumerate(names)]
    )
    write_lines(
        root / "CUB_200_2011" / "bounding_boxes.txt",
        [f"{i + 1} 10.0 12.0 30.0 20.0" for i in range(len(names))],
    )
    return {"train": (2, 20), "test": (3, 30)}


def make_oxford102(root: Path) -> dict:
    k = 0
    for cls, n in ((1, 5), (2, 4)):
        for _ in range(n):
            k += 1
            stem = f"image_{k:05d}"
            write_image(root / "jpg" / f"{stem}.jpg", seed=k)
            lines = [f"this flower has pink petals, number {i}." for i in range(11)]
            lines[3] = "{}"
            write_lines(root / "text_c10" / f"class_{cls:05d}" / f"{stem}.txt", lines)
    return {"train": (2 + 1, 30), "test": (3 + 3, 60)}


def make_coco(root: Path) -> dict:
    images, anns = [], []
    for i, (n_caps, name) in enumerate(((5, 9), (5, 25), (2, 30))):
        file_name = f"COCO_train2014_{name:012d}.jpg"
        images.append({"id": name, "file_name": file_name, "height": 40, "width": 48})
        write_image(root / "train2014" / file_name, seed=i)
        for c in range(n_caps):
            anns.append({"id": len(anns), "image_id": name, "caption": f"A cat sits on mat {c}."})
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "captions_train2014.json").write_text(
        json.dumps({"images": images, "annotations": anns})
    )
    return {"train": (3, 12)}


def make_celeba_hq(root: Path) -> dict:
    for i in range(10):
        write_image(root / "images" / f"{i}.jpg", seed=i)
        write_lines(root / "text" / f"{i}.txt", [f"the woman has blond hair {j}" for j in range(3)])
    return {"train": (8, 24), "test": (2, 6)}


ATTRS = ["Arched_Eyebrows", "Big_Lips", "Blurry", "Smiling", "Young"]


def make_celeba_attr(root: Path, zero_one: bool = False) -> dict:
    rows = [[1, 0, 0, 1, 1], [0, 1, 0, 0, 1], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0]]
    lines = [] if zero_one else [str(len(rows))]
    lines.append((" " if zero_one else "  ").join(ATTRS))
    for i, row in enumerate(rows):
        name = f"{i + 1:06d}.jpg"
        write_image(root / "img_align_celeba" / name, seed=i)
        vals = [str(v) if zero_one else ("1" if v else "-1") for v in row]
        lines.append(name + (" " if zero_one else "  ") + (" " if zero_one else "  ").join(vals))
    write_lines(root / "list_attr_celeba.txt", lines)
    return {"train": (3, 3), "test": (1, 1)}  # Blurry = 1 -> test


def make_folder(root: Path) -> dict:
    for i in range(3):
        write_image(root / f"img{i}.png", seed=i, fmt="PNG")
        write_lines(root / f"img{i}.txt", [f"a photo number {i}", "", f"another caption {i}"])
    return {"train": (3, 6)}


def make_jsonl(root: Path) -> Path:
    entries = []
    for i in range(4):
        write_image(root / "imgs" / f"p{i}.jpg", seed=i)
        entries.append({"image": f"imgs/p{i}.jpg", "captions": [f"caption {i}"] * (i + 1)})
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    return manifest


MAKERS = {
    "cub": make_cub,
    "oxford102": make_oxford102,
    "coco": make_coco,
    "celeba_hq": make_celeba_hq,
    "celeba_attr": make_celeba_attr,
    "folder": make_folder,
}


def make(fmt: str, tmp_path: Path) -> tuple[Path, dict]:
    """Build a fixture of ``fmt``; returns (data.root, {split: (images, captions)})."""
    root = tmp_path / fmt
    if fmt == "jsonl":
        return make_jsonl(root), {"train": (4, 10)}
    return root, MAKERS[fmt](root)
