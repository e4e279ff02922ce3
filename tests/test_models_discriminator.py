import pytest
import torch

from tgsr.config import ConfigError, DiscriminatorConfig
from tgsr.models.discriminator import Discriminator


@pytest.mark.parametrize("size", [32, 48, 64, 128, 256])
@pytest.mark.parametrize("norm", ["batch", "spectral"])
def test_logit_shapes(size, norm):
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(channels=4, norm=norm), size, 8, sentence_dim=12)
    uncond, cond = d(torch.rand(3, 3, size, size), torch.randn(3, 12))
    assert uncond.shape == (3,) and cond.shape == (3,)
    assert 3 <= d.code_size <= 7
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())


def test_attngan_d64_layout():
    d = Discriminator(DiscriminatorConfig(channels=64), 64, 8, sentence_dim=256)
    convs = [m for m in d.encode if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512] and d.code_size == 4


def test_unconditional_option_and_text_effect():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(4, conditional=False), 32, 4, sentence_dim=6)
    uncond, cond = d(torch.rand(2, 3, 32, 32), torch.randn(2, 6))
    assert cond is None and not hasattr(d, "cond")
    d = Discriminator(DiscriminatorConfig(4), 32, 4, sentence_dim=6).eval()
    img = torch.rand(2, 3, 32, 32)
    u1, c1 = d(img, torch.randn(2, 6))
    u2, c2 = d(img, torch.randn(2, 6))
    assert torch.equal(u1, u2) and not torch.equal(c1, c2)


def test_takes_its_config_and_checks_it_before_building():
    cfg = DiscriminatorConfig(channels=4, norm="spectral")
    d = Discriminator(cfg, 32, 4, sentence_dim=6)
    assert d.config is cfg and (d.hr_size, d.scale, d.sentence_dim) == (32, 4, 6)
    with pytest.raises(ConfigError, match="discriminator.norm must be 'batch' or 'spectral'"):
        Discriminator(DiscriminatorConfig(norm="layer"), 32, 4, 6)
    with pytest.raises(ConfigError, match="discriminator.channels must be >= 1"):
        Discriminator(DiscriminatorConfig(channels=0), 32, 4, 6)
    with pytest.raises(ValueError, match="hr_size must be >= 8"):
        Discriminator(DiscriminatorConfig(4), 4, 2, 6)
