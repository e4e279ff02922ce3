"""ShapeCaps language: attribute names, the caption generator and the caption parser.

Captions are generated from an attribute record (see :mod:`tgsr.data.synthetic`) with synonyms,
varied word order and several sentence structures, e.g.

    "a big round shape with blue and yellow checks on the left and a small vertically striped
    red-cyan triangle on the right"

Rules the generator keeps and the parser relies on:

* every object phrase starts with the article ``a``/``an`` and holds exactly one shape noun;
  no article occurs inside a fill description;
* the colour named first fills the pattern's "on" cells (the dots themselves for ``dots``);
* a position phrase follows its object (``on the left``), or precedes it when followed by
  ``is``/``sits``/``there`` (``on the right is a ...``), or relates two objects
  (``left of``: the object before is on the left); where only one of two objects has a
  position, the other one is on the other side;
* a caption has at most :data:`MAX_CAPTION_WORDS` tokens (the model keeps the first 18 at
  evaluation): an over-long draw is re-drawn, and a compact form that always fits is the
  fallback, so no attribute is ever truncated away.
"""

from __future__ import annotations

import random

from tgsr.text import tokenize

SHAPES = ("circle", "square", "triangle", "diamond", "hexagon")
PATTERNS = ("hstripes", "vstripes", "checks", "dots")
# every pair has the same mean colour (mid grey), so a pattern vanishes in the LR image
COLOR_PAIRS = (("red", "cyan"), ("green", "magenta"), ("blue", "yellow"), ("black", "white"))
SOLID_COLORS = (
    "red", "green", "blue", "yellow", "cyan", "magenta",
    "orange", "purple", "pink", "brown", "white", "black",
)  # fmt: skip
SIZE_WORDS = ("big", "small")
MAX_CAPTION_WORDS = 18

_SHAPE_NAMES = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "hexagon": ("hexagon",),
}
_SIZE_NAMES = {"big": ("big", "large"), "small": ("small", "little")}
_COLOR_NAMES = {"cyan": ("cyan", "turquoise"), "magenta": ("magenta", "fuchsia")}
_PATTERN_NOUNS = {
    "hstripes": ("horizontal stripes", "horizontal bands", "horizontal lines"),
    "vstripes": ("vertical stripes", "vertical bands", "vertical lines"),
    "checks": ("checks", "checkers", "checkerboard"),
    "dots": ("dots", "spots", "polka dots"),
}
_PATTERN_ADJS = {
    "hstripes": ("horizontally striped",),
    "vstripes": ("vertically striped",),
    "checks": ("checkered", "checked", "chequered"),
    "dots": ("dotted", "spotted"),
}
_SOLID_PREFIX = ("{c}", "{c}", "solid {c}", "plain {c}")
_SOLID_SUFFIX = ("in solid {c}", "in plain {c}", "painted {c}")
_POS_AFTER = ("on the {p}", "on the {p}", "at the {p}", "on the {p} side", "at {p}")
_POS_BEFORE = ("on the {p} is", "on the {p} sits", "at {p} there is", "at {p} is", "{p} is")
_RELATIONS = ("{p} of", "to the {p} of")
_LEADS_ONE = ("", "", "", "there is ", "a picture of ", "an image of ")
_LEADS_TWO = ("", "", "", "two shapes: ", "two objects: ", "an image of ")
_JOINS = (" and ", " and ", ", ")

# ----------------------------------------------------------------------------- parser tables
_ARTICLES = {"a", "an"}
_FORWARD = {"is", "sits", "there"}
_WORD_SHAPE = {w: s for s, names in _SHAPE_NAMES.items() for w in names if " " not in w}
_ROUND_NOUNS = {"shape", "object", "thing"}
_WORD_COLOR = {w: c for c in SOLID_COLORS for w in _COLOR_NAMES.get(c, (c,))}
_WORD_SIZE = {w: s for s, names in _SIZE_NAMES.items() for w in names}
_STRIPE_WORDS = {"stripes", "striped", "bands", "lines", "stripe", "band", "line"}
_CHECK_WORDS = {
    "checks",
    "checkers",
    "checkerboard",
    "checkered",
    "checked",
    "chequered",
    "checker",
}
_DOT_WORDS = {"dots", "spots", "dotted", "spotted", "polka", "dot", "spot"}
_SOLID_WORDS = {"solid", "plain"}


def _vowel_article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _color_word(name: str, rng: random.Random, compact: bool) -> str:
    names = _COLOR_NAMES.get(name, (name,))
    return names[0] if compact else rng.choice(names)


def _object_phrase(
    obj: dict, rng: random.Random, compact: bool = False, terse: bool = False
) -> str:
    """``"a big red and cyan checkered square"`` (article included); ``terse`` (two-object
    captions) favours the shorter phrasings so that most draws fit the word limit."""
    names = _SHAPE_NAMES[obj["shape"]]
    shape = names[0] if compact else rng.choice(names)
    pre: list[str] = []
    post: list[str] = []
    size = obj.get("size_word")
    if size and not compact and rng.random() < (0.35 if terse else 0.6):
        pre.append(rng.choice(_SIZE_NAMES[size]))
    if obj["fill"] == "solid":
        c = _color_word(obj["color"], rng, compact)
        if compact or rng.random() < 0.6:
            pre.append((_SOLID_PREFIX[0] if compact else rng.choice(_SOLID_PREFIX)).format(c=c))
        else:
            post.append(rng.choice(_SOLID_SUFFIX).format(c=c))
    else:
        pattern = obj["pattern"]
        c1, c2 = (_color_word(c, rng, compact) for c in obj["colors"])
        pair = (
            f"{c1}-{c2}" if compact or rng.random() < (0.7 if terse else 0.5) else f"{c1} and {c2}"
        )
        adj = _PATTERN_ADJS[pattern][0] if compact else rng.choice(_PATTERN_ADJS[pattern])
        noun = rng.choice(_PATTERN_NOUNS[pattern])
        style = 0 if compact else rng.randrange(6 if pattern == "dots" else 5)
        if style == 0:
            pre.append(f"{pair} {adj}")
        elif style == 1:
            pre.append(f"{adj} {pair}")
        elif style == 2:
            post.append(f"with {pair} {noun}")
        elif style == 3:
            post.append(f"with {noun} in {pair}")
        elif style == 4:
            post.append(f"in {pair} {noun}")
        else:  # dots only: "with red dots on cyan"
            post.append(f"with {c1} {noun} on {c2}")
    body = " ".join([*pre, shape, *post])
    return f"{_vowel_article(body)} {body}"


def _two_object_caption(
    objs: list[dict], rng: random.Random, compact: bool, keep_form: bool = False
) -> str | None:
    """Two object phrases and a sentence frame around them that fits the word limit (or None).

    The default draws the frame (weights 4:2:3:3) up to 8 times around the same phrases, which
    favours the short forms: 3 % of the captions put the positions first instead of 17 %.
    ``keep_form``: the form is drawn once and the object phrases are redrawn, up to 20 times,
    until it fits, so the long forms keep most of their share (12 %).
    """
    by_pos = {o.get("position"): o for o in objs}
    if set(by_pos) != {"left", "right"}:  # positions unknown: keep the record's order
        by_pos = {"left": objs[0], "right": objs[1]}
    first = "left" if compact or rng.random() < 0.5 else "right"
    second = "right" if first == "left" else "left"
    op_a = _object_phrase(by_pos[first], rng, compact, terse=True)
    op_b = _object_phrase(by_pos[second], rng, compact, terse=True)
    if compact:
        return f"{op_a} {_RELATIONS[0].format(p=first)} {op_b}"
    form = rng.choices((0, 1, 2, 3), weights=(4, 2, 3, 3))[0] if keep_form else None
    for attempt in range(20 if keep_form else 8):
        if form is None:
            structure = rng.choices((0, 1, 2, 3), weights=(4, 2, 3, 3))[0]
        else:
            structure = form
            if attempt:
                op_a = _object_phrase(by_pos[first], rng, compact, terse=True)
                op_b = _object_phrase(by_pos[second], rng, compact, terse=True)
        if structure == 0:  # "A on the left and B on the right"
            join = rng.choice(_JOINS)
            pa = rng.choice(_POS_AFTER).format(p=first)
            pb = rng.choice(_POS_AFTER).format(p=second)
            body = f"{op_a} {pa}{join}{op_b} {pb}"
        elif structure == 3:  # "A on the left and B": the other side is implied
            body = f"{op_a} {rng.choice(_POS_AFTER).format(p=first)} and {op_b}"
        elif structure == 1:  # "on the left is A and on the right sits B"
            pa = rng.choice(_POS_BEFORE).format(p=first)
            pb = rng.choice(_POS_BEFORE).format(p=second)
            body = f"{pa} {op_a}{rng.choice(_JOINS)}{pb} {op_b}"
        else:  # "A left of B"
            body = f"{op_a} {rng.choice(_RELATIONS).format(p=first)} {op_b}"
        text = rng.choice(_LEADS_TWO) + body
        if len(tokenize(text)) <= MAX_CAPTION_WORDS:
            return text
    return None


def make_caption(
    attrs: dict, rng: random.Random | int | None = None, forms: str = "natural"
) -> str:
    """A caption for an attribute record; ``rng`` (or an int seed) picks the phrasing.

    Always at most :data:`MAX_CAPTION_WORDS` tokens. ``forms="balanced"``: a two-object
    caption keeps the sentence form it draws (see :func:`_two_object_caption`); ``"natural"``
    (the evaluation captions' distribution) redraws the form when the words do not fit.
    """
    if forms not in ("natural", "balanced"):
        raise ValueError(f"forms must be 'natural' or 'balanced', got {forms!r}")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    objs = attrs["objects"]
    if len(objs) not in (1, 2):
        raise ValueError(f"a ShapeCaps scene has 1 or 2 objects, got {len(objs)}")
    for _ in range(10):
        if len(objs) == 1:
            text = rng.choice(_LEADS_ONE) + _object_phrase(objs[0], rng)
            if len(tokenize(text)) <= MAX_CAPTION_WORDS:
                return text
        else:
            text = _two_object_caption(objs, rng, compact=False, keep_form=forms == "balanced")
            if text is not None:
                return text
    if len(objs) == 1:
        return _object_phrase(objs[0], rng, compact=True)
    return _two_object_caption(objs, rng, compact=True)


CAPTION_FORMS = ("position_after_both", "position_after_one", "position_before", "relation")


def caption_form(caption: str) -> str:
    """The sentence form of a two-object caption of :func:`make_caption` (one of
    :data:`CAPTION_FORMS`): ``relation`` ("A left of B"), ``position_before`` ("on the left is A
    and on the right sits B"), or a position after each object (``position_after_both``) or after
    the first only (``position_after_one``)."""
    tokens = tokenize(caption)
    pairs = list(zip(tokens, tokens[1:], strict=False))
    if any(a in ("left", "right") and b == "of" for a, b in pairs):
        return "relation"
    if any(a in ("left", "right") and b in _FORWARD for a, b in pairs):
        return "position_before"
    sides = sum(t in ("left", "right") for t in tokens)
    return "position_after_both" if sides == 2 else "position_after_one"


def caption_words() -> set[str]:
    """Every token :func:`make_caption` can emit (the closed caption vocabulary)."""
    phrases: list[str] = ["a an with in on of and", *_LEADS_ONE, *_LEADS_TWO]
    phrases += [n for names in _SHAPE_NAMES.values() for n in names]
    phrases += [n for names in _SIZE_NAMES.values() for n in names]
    phrases += list(_WORD_COLOR)
    for table in (_PATTERN_NOUNS, _PATTERN_ADJS):
        phrases += [n for names in table.values() for n in names]
    phrases += [*_SOLID_PREFIX, *_SOLID_SUFFIX, *_POS_AFTER, *_POS_BEFORE, *_RELATIONS]
    words = {w for p in phrases for w in tokenize(p.replace("{c}", "").replace("{p}", ""))}
    return words | {"left", "right"}


# ----------------------------------------------------------------------------- parser


def _anchors(tokens: list[str]) -> list[tuple[int, int, str]]:
    """Shape nouns as ``(start, end, shape)`` token spans."""
    out = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "round" and i + 1 < len(tokens) and tokens[i + 1] in _ROUND_NOUNS:
            out.append((i, i + 2, "circle"))
            i += 2
            continue
        shape = _WORD_SHAPE.get(t) or _WORD_SHAPE.get(t[:-1] if t.endswith("s") else "")
        if shape:
            out.append((i, i + 1, shape))
        i += 1
    return out


def _fill_from_tokens(tokens: list[str]) -> dict:
    out: dict = {}
    sizes = [_WORD_SIZE[t] for t in tokens if t in _WORD_SIZE]
    if sizes:
        out["size_word"] = sizes[0]
    colors = [_WORD_COLOR[t] for t in tokens if t in _WORD_COLOR]
    toks = set(tokens)
    pattern = None
    if toks & _STRIPE_WORDS:
        if toks & {"horizontal", "horizontally"}:
            pattern = "hstripes"
        elif toks & {"vertical", "vertically"}:
            pattern = "vstripes"
        else:
            pattern = "stripes"  # direction not given
    elif toks & _CHECK_WORDS:
        pattern = "checks"
    elif toks & _DOT_WORDS:
        pattern = "dots"
    if pattern is not None:
        out["fill"] = "pattern"
        if pattern != "stripes":
            out["pattern"] = pattern
        if colors:
            out["colors"] = colors[:2]
    elif colors or toks & _SOLID_WORDS:
        out["fill"] = "solid"
        if colors:
            out["color"] = colors[0]
    return out


def _segments(tokens: list[str], anchors: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """Token span ``[start, end)`` of each anchor's phrase: boundaries at the last article
    before each anchor after the first."""
    n = len(anchors)
    starts = [0] * n
    for k in range(1, n):
        lo, hi = anchors[k - 1][1], anchors[k][0]
        starts[k] = next((i for i in range(hi - 1, lo - 1, -1) if tokens[i] in _ARTICLES), hi)
    return list(zip(starts, [*starts[1:], len(tokens)], strict=True))


def object_spans(text: str) -> list[tuple[str, int, int]]:
    """``(shape, start, end)`` per shape noun of a caption: the token span (indices into
    ``tokenize(text)``) that :func:`parse_caption` reads that object's words from."""
    tokens = tokenize(text)
    anchors = _anchors(tokens)
    return [(a[2], s, e) for a, (s, e) in zip(anchors, _segments(tokens, anchors), strict=True)]


def parse_caption(text: str) -> dict:
    """A caption (generated or typed by a user) -> partial attributes.

    Returns ``{"objects": [obj, ...]}`` where each ``obj`` holds only the keys the caption
    determines: ``shape``, ``position`` (``"left"``/``"right"``), ``size_word``, ``fill``
    (``"pattern"``/``"solid"``), ``pattern``, ``colors`` (named order: first = "on" cells),
    ``color`` (solid). Unknown words are ignored. One object per shape noun; a caption that
    names no shape but describes a fill gives one object without ``shape``.
    """
    tokens = tokenize(text)
    anchors = _anchors(tokens)
    if not anchors:
        fill = _fill_from_tokens(tokens)
        return {"objects": [fill] if fill else []}
    n = len(anchors)
    spans = _segments(tokens, anchors)  # object k's words: tokens[spans[k][0]:spans[k][1]]
    objects: list[dict] = [{"shape": a[2]} for a in anchors]
    owned: list[list[str]] = [[] for _ in range(n)]
    for k in range(n):
        for i in range(*spans[k]):
            t = tokens[i]
            if t not in ("left", "right"):
                if anchors[k][0] <= i < anchors[k][1]:
                    continue
                owned[k].append(t)
                continue
            nxt = tokens[i + 1 : i + 3]
            other = "right" if t == "left" else "left"
            if nxt[:1] == ["of"] and k + 1 < n:  # "A left of B"
                objects[k].setdefault("position", t)
                objects[k + 1].setdefault("position", other)
            elif i > anchors[k][0] and k + 1 < n and set(nxt) & _FORWARD:  # "on the right is B"
                objects[k + 1]["position"] = t
            else:
                objects[k]["position"] = t
    if n == 2:  # one side named: the other object is on the other side
        known = [o["position"] for o in objects if "position" in o]
        if len(known) == 1:
            other = "right" if known[0] == "left" else "left"
            for o in objects:
                o.setdefault("position", other)
    for k in range(n):
        objects[k].update(_fill_from_tokens(owned[k]))
    return {"objects": objects}


# ----------------------------------------------------------------------------- caption draws


def caption_rng(split: str, seed: int, draw: str = "eval") -> random.Random:
    """The caption rng of scene ``seed`` of ``split``; ``draw="eval"`` gives the fixed caption."""
    return random.Random(f"shapecaps-caption:{split}:{seed}:{draw}")


def eval_caption(attrs: dict) -> str:
    """The fixed (evaluation) caption of a sampled scene."""
    return make_caption(attrs, caption_rng(attrs["split"], attrs["seed"]))
