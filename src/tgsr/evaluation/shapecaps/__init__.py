"""The ShapeCaps benchmark's scoring (the data set itself is :mod:`tgsr.data.synthetic`):

* :mod:`~tgsr.evaluation.shapecaps.scorers`: exact scorers of one image or a batch (pattern
  accuracy, edits and their success), no learned classifier;
* :mod:`~tgsr.evaluation.shapecaps.protocol`: :class:`ShapeCapsEval`, the edit / swap /
  compositional protocol that ``tgsr eval`` runs on the synthetic data set.
"""

from tgsr.evaluation.shapecaps.protocol import ShapeCapsEval
from tgsr.evaluation.shapecaps.scorers import (
    MIN_CONTRAST,
    PATTERN_FILLS,
    SOLID_FILLS,
    can_edit,
    chance_level,
    classify_fill,
    edit_success,
    make_edit,
    pattern_accuracy,
    swap_success,
)

__all__ = [
    "MIN_CONTRAST",
    "PATTERN_FILLS",
    "SOLID_FILLS",
    "ShapeCapsEval",
    "can_edit",
    "chance_level",
    "classify_fill",
    "edit_success",
    "make_edit",
    "pattern_accuracy",
    "swap_success",
]
