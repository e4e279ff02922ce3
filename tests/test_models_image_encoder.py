import pytest
import torch

from tgsr.config import ConfigError, ImageEncoderConfig
from tgsr.errors import ModelFormatError
from tgsr.models import InceptionImageEncoder, build_image_encoder


def _inception(path) -> ImageEncoderConfig:
    return ImageEncoderConfig(kind="inception", feature_dim=16, weights=str(path))


@pytest.fixture(scope="module")
def imagenet_like_file(tmp_path_factory):
    """A torchvision-format Inception-v3 state dict (random values, with AuxLogits)."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path_factory.mktemp("w") / "inception_v3.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_no_weights_is_an_error_naming_both_options_scratch_only_when_asked():
    with pytest.raises(ConfigError) as exc:
        build_image_encoder(ImageEncoderConfig(kind="inception", feature_dim=16))
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    assert "inception_v3_google-0cc3c7bd.pth" in msg and "efficientnet_lite0" in msg
    assert "scratch" in msg
    enc = build_image_encoder(
        ImageEncoderConfig(kind="inception", feature_dim=16, weights="scratch")
    )
    assert all(p.requires_grad for p in enc.parameters())
    enc.eval()
    with torch.no_grad():
        regions, glob = enc(torch.rand(1, 3, 64, 64))
    assert regions.shape == (1, 16, 17, 17) and glob.shape == (1, 16)


def test_pretrained_loads_strict_and_freezes(imagenet_like_file):
    path, state = imagenet_like_file
    enc = InceptionImageEncoder(_inception(path))
    torch.testing.assert_close(
        enc.backbone["Mixed_6e"].branch1x1.conv.weight, state["Mixed_6e.branch1x1.conv.weight"]
    )
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert enc.emb_features.weight.requires_grad and enc.emb_global.weight.requires_grad
    enc.train()
    assert not enc.backbone.training and enc.emb_features.training


def test_mismatched_weights_clear_error(imagenet_like_file, tmp_path):
    _, state = imagenet_like_file
    bad = dict(state)
    bad.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ModelFormatError, match="missing keys .*Mixed_7c.branch_pool.conv.weight"):
        InceptionImageEncoder(_inception(tmp_path / "bad.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFormatError, match="cannot read"):
        InceptionImageEncoder(_inception(tmp_path / "junk.pth"))
    with pytest.raises(ModelFormatError, match="not found"):
        InceptionImageEncoder(_inception(tmp_path / "nope.pth"))


def test_config_kept_and_kind_weights_checked_in_validate():
    cfg = ImageEncoderConfig(kind="inception", feature_dim=16, weights="scratch")
    assert build_image_encoder(cfg).config is cfg
    bad = ImageEncoderConfig(kind="efficientnet_lite0", weights="scratch")
    with pytest.raises(ConfigError, match="scratch is for kind=inception"):
        bad.validate()  # before any weights are looked for
