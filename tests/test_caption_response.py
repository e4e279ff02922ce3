"""The caption-response metric (tgsr.evaluation.caption_response) on constructed outputs."""

from __future__ import annotations

import pytest
import torch

from tgsr.evaluation.caption_response import (
    COLOUR_LAB,
    COLOUR_RGB,
    COLOUR_SWAPS,
    caption_response,
    colour_words,
    rgb_to_lab,
    summarise,
    swap_colour,
)


def test_swap_colour_words():
    assert swap_colour("this bird has a Red crown and red wings") == (
        "this bird has a Blue crown and blue wings", "red", "blue")  # fmt: skip
    assert swap_colour("a black bird with a white belly") == (
        "a yellow bird with a white belly", "black", "yellow")  # fmt: skip
    assert swap_colour("a black bird with a white belly", old="white", new="green") == (
        "a black bird with a green belly", "white", "green")  # fmt: skip
    assert swap_colour("a bird with a long bill") is None
    assert swap_colour("a red bird", new="red") is None
    assert swap_colour("reddish bird bluebird") is None  # whole words only
    assert colour_words("Grey and gray, BLUE") == ["grey", "gray", "blue"]
    assert all(COLOUR_SWAPS[c] != c and COLOUR_SWAPS[c] in COLOUR_LAB for c in COLOUR_SWAPS)


def test_lab_table_matches_the_conversion():
    for name, rgb in COLOUR_RGB.items():
        lab = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(3, 1, 1) / 255).flatten()
        assert lab.tolist() == pytest.approx(COLOUR_LAB[name], abs=0.1), name


def _bird(colour: tuple[int, int, int]) -> torch.Tensor:
    img = torch.full((3, 20, 20), 0.5)
    img[:, 5:10, 5:10] = torch.tensor(colour).view(3, 1, 1) / 255  # the changed patch: 25 px
    return img


def test_change_and_direction_on_constructed_outputs():
    grey = _bird((128, 128, 128))
    red, blue, dark = _bird((200, 30, 30)), _bird((30, 30, 200)), _bird((10, 10, 10))
    green = _bird((0, 128, 0))
    a = torch.stack([red, red, red, grey, grey])
    b = torch.stack([blue, red, blue, dark, green])
    old = ["red", "red", "red", "grey", "grey"]
    new = ["blue", "blue", "yellow", "black", "red"]
    res = caption_response(a, b, old, new, top_fraction=25 / 400)
    # red -> blue over the 25 changed pixels: |200-30| twice, 0 once -> 113.3 levels
    assert res[0].change == pytest.approx((170 + 0 + 170) / 3, abs=0.01)
    assert res[0].change_all == pytest.approx(res[0].change * 25 / 400, abs=0.01)
    assert res[0].toward  # red to blue: a* stays high, b* goes strongly negative
    assert res[1].change == 0 and not res[1].toward  # no change is not a response
    assert not res[2].toward  # asked for yellow, went blue: b* falls, yellow is high b*
    assert res[3].toward  # grey -> darker for "black": L* goes down
    assert not res[4].toward  # asked for red, went green: a* falls
    s = summarise(res)
    assert s["num_edits"] == 5 and s["toward_fraction"] == pytest.approx(2 / 5)
    assert s["edits"]["red->blue"] == 2
    assert summarise([])["toward_fraction"] is None


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="two"):
        caption_response(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), ["red"], ["blue"])
