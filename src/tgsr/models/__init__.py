"""Networks: DAMSM encoders, TAM, generator (paper + released presets), discriminator."""

from tgsr.models.attention import TextAttention
from tgsr.models.damsm import (
    DAMSM,
    RPrecision,
    damsm_loss,
    r_precision,
    sentence_loss,
    sentence_scores,
    tim,
    word_scores,
    words_loss,
)
from tgsr.models.discriminator import Discriminator
from tgsr.models.generator import Generator, GeneratorOutput
from tgsr.models.image_encoder import InceptionImageEncoder, LightImageEncoder, build_image_encoder
from tgsr.models.serialization import (
    load_component,
    load_damsm,
    load_generator,
    load_image_encoder,
    load_text_encoder,
    save_component,
    save_damsm,
    save_generator,
    save_image_encoder,
    save_text_encoder,
)
from tgsr.models.text_encoder import TextEncoder, TextFeatures, token_mask_from_lengths

__all__ = [
    "DAMSM",
    "Discriminator",
    "Generator",
    "GeneratorOutput",
    "InceptionImageEncoder",
    "LightImageEncoder",
    "RPrecision",
    "TextAttention",
    "TextEncoder",
    "TextFeatures",
    "build_image_encoder",
    "damsm_loss",
    "load_component",
    "load_damsm",
    "load_generator",
    "load_image_encoder",
    "load_text_encoder",
    "r_precision",
    "save_component",
    "save_damsm",
    "save_generator",
    "save_image_encoder",
    "save_text_encoder",
    "sentence_loss",
    "sentence_scores",
    "tim",
    "token_mask_from_lengths",
    "word_scores",
    "words_loss",
]
