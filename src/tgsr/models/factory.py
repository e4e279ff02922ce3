"""``build_generator``: the one place a generator class is chosen (``GeneratorConfig.arch``)."""

from __future__ import annotations

from tgsr.config import Config, GeneratorConfig
from tgsr.models.generator import GeneratorBase
from tgsr.models.paper_generator import PaperGenerator
from tgsr.models.released_generator import ReleasedGenerator

GENERATORS: dict[str, type[GeneratorBase]] = {
    "paper": PaperGenerator,
    "released": ReleasedGenerator,
}


def build_generator(
    cfg: Config | GeneratorConfig, word_dim: int, scale: int | None = None
) -> GeneratorBase:
    """The generator ``cfg`` describes, with fresh weights from torch's global RNG.

    ``cfg`` is a run's :class:`Config` (the scale is ``data.scale``) or a
    :class:`GeneratorConfig` with ``scale`` given; ``word_dim`` is the size of the word
    features the TAMs read (the text encoder's ``feature_dim``)."""
    if isinstance(cfg, Config):
        if scale is not None and scale != cfg.data.scale:
            raise ValueError(f"scale={scale} but the config says data.scale={cfg.data.scale}")
        cfg, scale = cfg.generator, cfg.data.scale
    if scale is None:
        raise ValueError("build_generator(GeneratorConfig, word_dim, scale): give the scale")
    cls = GENERATORS[cfg.arch]
    return cls(cfg, scale, word_dim)
