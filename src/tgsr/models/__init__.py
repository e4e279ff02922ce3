"""Networks: DAMSM encoders, TAM, generators (PaperGenerator, ReleasedGenerator; build_generator
picks one), discriminator."""

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
from tgsr.models.factory import GENERATORS, build_generator
from tgsr.models.generator import GeneratorBase, GeneratorOutput
from tgsr.models.image_encoder import InceptionImageEncoder, LightImageEncoder, build_image_encoder
from tgsr.models.paper_generator import PaperGenerator
from tgsr.models.released_generator import ReleasedGenerator
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
    "GENERATORS",
    "GeneratorBase",
    "GeneratorOutput",
    "InceptionImageEncoder",
    "LightImageEncoder",
    "PaperGenerator",
    "RPrecision",
    "ReleasedGenerator",
    "TextAttention",
    "TextEncoder",
    "TextFeatures",
    "build_generator",
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
