"""Evaluation report: ``results.json``, ``report.md`` and a self-contained ``report.html``.

``results`` layout (what the evaluation driver writes and this module reads)::

    {"models": {"tgsr": {"psnr": 27.1, "niqe": None, ...}, "baseline": {...},
                "bicubic": {...}, "gt": {"tim": ..., "r_precision": ...}},
     "notes": {"niqe": "n/a (images smaller than 96x96 ...)", "lpips": "unavailable: ..."},
     ...}

A metric value is a number, ``None`` (not computed: the reason is ``results["notes"][metric]``),
or ``{"value": x | None, "reason": "..."}`` for a per-model reason. A metric a model does not
have at all (``gt`` has no PSNR) is shown as an em dash. Non-numeric entries (nested dicts such
as per-split breakdowns) are kept in ``results.json`` and listed under "Details".
Nothing is ever invented: a missing number is printed as "n/a" / "unavailable" with its reason.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tgsr.files import atomic_write

__all__ = [
    "HEADLINE_METRICS",
    "METRICS",
    "headline_table",
    "metric_cell",
    "print_headline",
    "write_report",
]

# key -> (label, format, direction)
METRICS: dict[str, tuple[str, str, str]] = {
    "psnr": ("PSNR-Y (dB)", "{:.2f}", "↑"),
    "ssim": ("SSIM-Y", "{:.4f}", "↑"),
    "lr_psnr": ("LR-PSNR (dB)", "{:.2f}", "↑"),
    "lpips": ("LPIPS", "{:.4f}", "↓"),
    "fid": ("FID", "{:.2f}", "↓"),
    "niqe": ("NIQE", "{:.3f}", "↓"),
    "tim": ("TIM", "{:.3f}", "↑"),
    "r_precision": ("R-precision", "{:.3f}", "↑"),
    "tim_train_encoder": ("TIM (training DAMSM)", "{:.3f}", "↑"),
    "r_precision_train_encoder": ("R-precision (training DAMSM)", "{:.3f}", "↑"),
    "pattern_accuracy": ("pattern acc.", "{:.3f}", "↑"),
    "pattern_accuracy_one_object": ("pattern acc. (1 obj.)", "{:.3f}", "↑"),
    "pattern_accuracy_two_objects": ("pattern acc. (2 obj.)", "{:.3f}", "↑"),
    "pattern_accuracy_compositional": ("pattern acc. (compositional)", "{:.3f}", "↑"),
    "edit_success": ("edit success", "{:.3f}", "↑"),
    "swap_success": ("swap success", "{:.3f}", "↑"),
}
HEADLINE_METRICS = (
    "psnr", "ssim", "lr_psnr", "lpips", "niqe", "fid", "tim", "r_precision",
    "pattern_accuracy", "pattern_accuracy_two_objects", "pattern_accuracy_compositional",
    "edit_success", "swap_success",
)  # fmt: skip
MODEL_NAMES = {"tgsr": "TGSR", "baseline": "no-text baseline", "bicubic": "bicubic",
               "gt": "ground truth"}  # fmt: skip
_MODEL_ORDER = ("tgsr", "baseline", "bicubic", "gt")
_ABSENT = "—"

_FIGURE_CAPTIONS = {
    # the evaluation driver passes its own caption naming the columns the grid has
    "comparison": "Side-by-side comparison; the caption given to the text models is under each "
    "row.",
    "attention": "Per-word attention maps of the text attention module over the image.",
    "edits": "One LR input, several captions: the output should follow each caption.",
    "training_curves": "Training scalars against the optimizer step.",
}


# ----------------------------------------------------------------------------- cells


def _split(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, Mapping) and "value" in value:
        return value["value"], value.get("reason")
    return value, None


def _is_scalar(value: Any) -> bool:
    v, _ = _split(value)
    return v is None or isinstance(v, (int, float, str, bool))


def metric_cell(key: str, value: Any, note: str | None = None) -> tuple[str, str | None]:
    """``(text, reason)`` for one table cell: a formatted number, or "n/a"/"unavailable" and why."""
    v, reason = _split(value)
    reason = reason or note
    if v is None:
        word = "unavailable" if reason and reason.startswith("unavailable") else "n/a"
        return word, reason
    if isinstance(v, bool):
        return str(v).lower(), None
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return ("∞" if v > 0 else "-∞") if not math.isnan(v) else "nan", None
        fmt = METRICS.get(key, (key, "{:.4g}", ""))[1]
        return fmt.format(v), None
    return str(v), None


def _models(results: Mapping) -> list[str]:
    models = list(results.get("models", {}))
    first = [m for m in _MODEL_ORDER if m in models]
    return first + [m for m in models if m not in first]


def _label(key: str) -> str:
    label, _, direction = METRICS.get(key, (key, "", ""))
    return f"{label} {direction}".strip()


def _model_label(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def _columns(results: Mapping, keys) -> list[str]:
    models = results.get("models", {})
    return [k for k in keys if any(k in models[m] for m in models)]


def _table_rows(results: Mapping, keys: list[str]) -> tuple[list[list[str]], dict[str, str]]:
    """Rows of cell texts (model label first) and the notes ``{metric label: reason}``."""
    notes_in = results.get("notes", {}) or {}
    rows, notes = [], {}
    for m in _models(results):
        entry = results["models"][m]
        row = [_model_label(m)]
        for k in keys:
            if k not in entry:
                row.append(_ABSENT)
                continue
            text, reason = metric_cell(k, entry[k], notes_in.get(k))
            if reason:
                notes.setdefault(METRICS.get(k, (k,))[0], reason)
            row.append(text)
        rows.append(row)
    return rows, notes


def _all_missing(results: Mapping, key: str) -> bool:
    models = results.get("models", {})
    return all(_split(models[m].get(key))[0] is None for m in models)


def _headline_keys(results: Mapping) -> list[str]:
    return [k for k in _columns(results, HEADLINE_METRICS) if not _all_missing(results, k)]


def _dropped_notes(results: Mapping) -> dict[str, str]:
    """Notes for headline metrics that no model has a number for (their column is left out)."""
    notes_in = results.get("notes", {}) or {}
    notes = {}
    for k in _columns(results, HEADLINE_METRICS):
        if not _all_missing(results, k):
            continue
        entry = next(m[k] for m in results["models"].values() if k in m)
        _, reason = metric_cell(k, entry, notes_in.get(k))
        notes[METRICS.get(k, (k,))[0]] = reason or "n/a"
    return notes


def _headline(results: Mapping) -> tuple[list[str], list[list[str]], dict[str, str]]:
    keys = _headline_keys(results)
    rows, notes = _table_rows(results, keys)
    return ["model"] + [_label(k) for k in keys], rows, {**notes, **_dropped_notes(results)}


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = [
        "| " + " | ".join(esc[0]) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def headline_table(results: Mapping, notes: bool = True) -> str:
    """Markdown table of models x key metrics; columns with no number for any model are left
    out and, with ``notes``, listed under the table with their reason (e.g. "NIQE: n/a (images
    smaller than 96x96 ...)")."""
    header, rows, reasons = _headline(results)
    text = _md_table(header, rows)
    if notes and reasons:
        text += "\n\n" + "\n".join(f"- {k}: {v}" for k, v in reasons.items())
    return text


_SHORT = {
    "psnr": "PSNR", "ssim": "SSIM", "lr_psnr": "LR-PSNR", "lpips": "LPIPS", "fid": "FID",
    "niqe": "NIQE", "tim": "TIM", "r_precision": "R-prec", "pattern_accuracy": "pattern",
    "pattern_accuracy_two_objects": "pattern 2-obj",
    "pattern_accuracy_compositional": "pattern comp.", "edit_success": "edit",
    "swap_success": "swap",
}  # fmt: skip


def print_headline(results: Mapping, console=None) -> None:
    """Print the headline table with rich (short column names; the notes under it)."""
    console = console or Console()
    keys = _headline_keys(results)
    rows, notes = _table_rows(results, keys)
    table = Table(title="TGSR evaluation (PSNR/SSIM on Y; NIQE, LPIPS, FID: lower is better)")
    table.add_column("model", no_wrap=True)
    for k in keys:
        table.add_column(_SHORT.get(k, k), justify="right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for k, v in {**notes, **_dropped_notes(results)}.items():
        console.print(f"{k}: {v}", markup=False, highlight=False)


# ----------------------------------------------------------------------------- files


def _jsonable(x: Any) -> Any:
    """Plain JSON: tensors/numpy scalars -> numbers, Paths -> str, non-finite -> "inf"/"nan"."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _place_figures(out_dir: Path, figures: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(name, relative path, caption)`` per figure; files outside ``out_dir`` are copied in."""
    placed = []
    for name, spec in figures.items():
        if isinstance(spec, (tuple, list)):
            path, caption = Path(spec[0]), str(spec[1])
        else:
            path, caption = Path(spec), _FIGURE_CAPTIONS.get(name, "")
        try:
            rel = path.resolve().relative_to(out_dir.resolve())
        except ValueError:
            dest = out_dir / "figures" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                shutil.copyfile(path, dest)
            rel = dest.relative_to(out_dir)
        placed.append((name, rel.as_posix(), caption))
    return placed


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _details(results: Mapping) -> dict[str, Any]:
    out = {}
    for m in _models(results):
        for k, v in results["models"][m].items():
            if not _is_scalar(v):
                out[f"{m}.{k}"] = v
    return out


def _render_md(results, placed, meta, full_header, full_rows, full_notes) -> str:
    parts = [f"# {meta.get('title', 'TGSR evaluation report')}", ""]
    if meta.get("command"):
        parts += ["Reproduce with:", "", "```bash", str(meta["command"]), "```", ""]
    parts += ["## Headline", "", headline_table(results), "", "## All metrics", ""]
    parts += [_md_table(full_header, full_rows), ""]
    if full_notes:
        parts += [f"- {k}: {v}" for k, v in full_notes.items()] + [""]
    for name, rel, caption in placed:
        parts += [f"## {_title(name)}", "", f"![{name}]({rel})", ""]
        if caption:
            parts += [f"*{caption}*", ""]
    details = _details(results)
    if details:
        parts += ["## Details", "", "```json", json.dumps(_jsonable(details), indent=2), "```", ""]
    other = {k: v for k, v in meta.items() if k not in ("title", "command")}
    if other:
        parts += ["## Run", ""] + [f"- **{k}**: {v}" for k, v in other.items()] + [""]
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #d0d0d7;padding:.35em .7em;text-align:right}
th{background:#f2f2f6}td:first-child,th:first-child{text-align:left}
td.na{color:#8a8a8f;font-style:italic}
figure{margin:1.5em 0}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em;margin-top:.4em}
pre{background:#f6f6f8;padding:1em;overflow-x:auto}ul.notes{color:#555;font-size:.9em}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            cls = ' class="na"' if i and c in ("n/a", "unavailable", _ABSENT) else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _html_notes(notes: Mapping[str, str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in notes.items())
    return f'<ul class="notes">{items}</ul>'


def _render_html(results, placed, meta, full_header, full_rows, full_notes) -> str:
    e = html.escape
    title = e(str(meta.get("title", "TGSR evaluation report")))
    h_header, h_rows, h_notes = _headline(results)
    body = [f"<h1>{title}</h1>"]
    if meta.get("command"):
        body.append(f"<p>Reproduce with:</p><pre>{e(str(meta['command']))}</pre>")
    body += ["<h2>Headline</h2>", _html_table(h_header, h_rows), _html_notes(h_notes)]
    body += ["<h2>All metrics</h2>", _html_table(full_header, full_rows), _html_notes(full_notes)]
    for name, rel, caption in placed:
        cap = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
        body.append(
            f'<section><h2>{e(_title(name))}</h2><figure><img src="{e(rel, quote=True)}" '
            f'alt="{e(name, quote=True)}">{cap}</figure></section>'
        )
    details = _details(results)
    if details:
        body.append(f"<h2>Details</h2><pre>{e(json.dumps(_jsonable(details), indent=2))}</pre>")
    other = {k: v for k, v in meta.items() if k not in ("title", "command")}
    if other:
        items = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in other.items())
        body.append(f"<h2>Run</h2><ul>{items}</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_report(
    out_dir: str | Path,
    results: Mapping,
    figures: Mapping[str, Path | tuple[Path, str]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``results.json`` (the dict as given, made plain JSON), ``report.md`` and
    ``report.html`` into ``out_dir``; returns their paths (keys ``json``, ``md``, ``html``).

    ``figures``: ``name -> path`` (or ``(path, caption)``); known names (``comparison``,
    ``attention``, ``edits``, ``training_curves``) get a default caption. A relative figure path
    is relative to the working directory, like ``out_dir``. The report links images by paths relative to ``out_dir``, where the report
    files are (files elsewhere are copied into ``out_dir/figures``).
    ``meta``: ``title``, ``command`` (shown as "Reproduce with") and any other key/values
    (device, duration, config ...) listed under "Run".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures, meta = dict(figures or {}), dict(meta or {})
    if "models" not in results or not isinstance(results["models"], Mapping):
        raise ValueError('results must hold {"models": {name: {metric: value}}}')
    placed = _place_figures(out_dir, figures)
    known = [k for k in METRICS if k in {k2 for m in results["models"].values() for k2 in m}]
    extra = sorted(
        {k for m in results["models"].values() for k, v in m.items() if _is_scalar(v)} - set(known)
    )
    keys = known + extra
    full_rows, full_notes = _table_rows(results, keys)
    full_header = ["model"] + [_label(k) for k in keys]
    paths = {"json": out_dir / "results.json", "md": out_dir / "report.md",
             "html": out_dir / "report.html"}  # fmt: skip
    _write(paths["json"], json.dumps(_jsonable(results), indent=2) + "\n")
    _write(paths["md"], _render_md(results, placed, meta, full_header, full_rows, full_notes))
    _write(paths["html"], _render_html(results, placed, meta, full_header, full_rows, full_notes))
    return paths
