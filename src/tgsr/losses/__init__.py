"""Training objective: pixel / low-pass L2, TAR, TIC (DAMSM), cGAN; a suite of active terms."""

from tgsr.losses.suite import TERMS, LossSuite
from tgsr.losses.terms import bce_logits, pyramid_l2, tar_loss, tar_weight

__all__ = ["TERMS", "LossSuite", "bce_logits", "pyramid_l2", "tar_loss", "tar_weight"]
