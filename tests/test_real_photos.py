"""`tgsr upscale` on real photographs with captions (the two photographs matplotlib ships as
sample data: Grace Hopper's portrait and a photo of a gift box), reduced to LR inputs by the
data pipeline's own degradation. Outputs must be exactly scale x the input, 8-bit, no NaN, and a
large input must go through tiling."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from helpers_pipeline import make_pipeline_dir
from tgsr.cli.app import main
from tgsr.data.degradations import degrade, image_to_tensor, quantize, tensor_to_image
from tgsr.data.images import load_image
from tgsr.pipeline import TGSRPipeline

SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"
PHOTOS = {"grace_hopper.jpg": "a woman in a dark uniform with a white collar and a flag",
          "Minduka_Present_Blue_Pack.png": "a blue gift box with a ribbon on a white table"}  # fmt: skip


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, caption in PHOTOS.items():
        src = SAMPLES / name
        if not src.is_file():
            pytest.skip(f"matplotlib sample photograph {name} not installed")
        img = load_image(src)
        lq = tensor_to_image(quantize(degrade(image_to_tensor(img)[None], 8)[0]))
        Image.fromarray(lq).save(folder / f"{Path(name).stem}.png")
        (folder / f"{Path(name).stem}.txt").write_text(caption + "\n")
    return folder


def test_upscale_folder_of_real_photographs(photo_dir, tmp_path, monkeypatch, capsys):
    model = make_pipeline_dir(tmp_path / "m", scale=8)
    monkeypatch.setattr(sys, "argv", ["tgsr", "upscale", str(photo_dir), "--model", str(model),
                                      "--text", "a blue box", "--out", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0, capsys.readouterr().err
    for lq_path in sorted(photo_dir.glob("*.png")):
        w, h = Image.open(lq_path).size
        sr = np.asarray(Image.open(tmp_path / "out" / lq_path.name))
        assert sr.shape == (8 * h, 8 * w, 3) and sr.dtype == np.uint8
        assert sr.std() > 1.0  # a real picture, not a flat fill


def test_real_photograph_through_the_python_api_is_tiled_and_finite(photo_dir, tmp_path):
    model = make_pipeline_dir(tmp_path / "m", scale=8)
    pipe = TGSRPipeline.from_pretrained(model)
    lq = Image.open(next(iter(sorted(photo_dir.glob("grace*.png")))))
    # a small memory budget: the 64x75 LR input must go through tiling
    out = pipe(lq, "a woman in a dark uniform", max_memory="8MiB", output_type="pt")
    sr = out.images if torch.is_tensor(out.images) else torch.as_tensor(np.asarray(out.images))
    assert tuple(sr.shape[-2:]) == (8 * lq.size[1], 8 * lq.size[0])
    sr = sr.float()
    assert sr.min() >= 0 and sr.max() <= 1 and sr.std() > 0.01  # a picture in range, no NaN
    assert out.tiled
    shutil.rmtree(tmp_path / "m")
