"""The commands the docs tell people to run exist as written: every ``tgsr …`` command line in
README.md and docs/*.md (code blocks and inline code) names a real subcommand and only options
that subcommand accepts, every ``--set KEY=…`` names a config key, and every
``python benchmarks/X.py …`` names a script that exists and options it (or the module whose
``main`` it runs) defines."""

from __future__ import annotations

import ast
import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import typer

from tgsr.cli.app import app
from tgsr.config import Config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
# Placeholders in the docs' syntax lines, not keys a user types.
PLACEHOLDER_KEYS = {"a.b"}


def _snippets(text: str):
    """Lines of fenced code blocks (continuations joined) and inline code spans (which may wrap
    onto the next line of the paragraph)."""
    fences = r"```[a-z]*\n(.*?)```"
    for block in re.findall(fences, text, re.S):
        yield from block.replace("\\\n", " ").splitlines()
    for span in re.findall(r"`([^`]+)`", re.sub(fences, "", text, flags=re.S)):
        if "\n\n" not in span:
            yield " ".join(span.split())


def _tgsr_commands(text: str):
    """Command lines that start with ``tgsr`` (after ``$``, ``(``, env assignments or ``&&``)."""
    for line in _snippets(text):
        for part in re.split(r"&&|\|\||;|\|", line):
            part = re.sub(r"\s#.*$", "", part).strip()
            m = re.match(r"(?:\$\s+|\(\s*|[A-Z_]+=\S*\s+)*(tgsr\s+[a-z].*)$", part)
            if m:
                yield m.group(1).rstrip(")")


def _options(command) -> set[str]:
    opts = {"--help"}
    for p in command.params:
        opts.update(p.opts)
        opts.update(p.secondary_opts)
    return opts


def _config_key_exists(key: str) -> bool:
    node = Config()
    for part in key.split("."):
        if not dataclasses.is_dataclass(node) or part not in {
            f.name for f in dataclasses.fields(node)
        }:
            return False
        node = getattr(node, part)
    return True


def cli_problems(text: str) -> tuple[int, list[str]]:
    """(commands checked, problems) for the ``tgsr`` commands in ``text``."""
    group = typer.main.get_command(app)
    problems, n = [], 0
    for cmd in _tgsr_commands(text):
        try:
            tokens = shlex.split(cmd)
        except ValueError:
            continue
        node, i = group, 1
        while hasattr(node, "commands") and i < len(tokens) and tokens[i] in node.commands:
            node, i = node.commands[tokens[i]], i + 1
        if hasattr(node, "commands"):  # a group: only `tgsr data --help` and the like are fine
            if i < len(tokens) and not tokens[i].startswith("-"):
                problems.append(f"{cmd!r}: no subcommand {tokens[i]!r}")
            continue
        n += 1
        known = _options(node)
        for j, tok in enumerate(tokens[i:], start=i):
            if tok.startswith("--") and tok.split("=")[0] not in known:
                problems.append(
                    f"{cmd!r}: {' '.join(tokens[:i])} has no option {tok.split('=')[0]}"
                )
            if tok == "--set" and j + 1 < len(tokens):
                key = tokens[j + 1].split("=")[0]
                if key not in PLACEHOLDER_KEYS and not _config_key_exists(key):
                    problems.append(f"{cmd!r}: no config key {key!r}")
    return n, problems


def _script_options(script: Path) -> set[str]:
    src = script.read_text()
    for module in re.findall(r"^from (\w+) import main\b", src, re.M):  # thin front ends
        if (script.parent / f"{module}.py").exists():
            src += (script.parent / f"{module}.py").read_text()
    return set(re.findall(r"[\"'](--[\w-]+)[\"']", src)) | {"--help"}


def benchmark_problems(text: str, root: Path = ROOT, plain: bool = False) -> tuple[int, list[str]]:
    """(commands checked, problems) for the ``python benchmarks/X.py`` commands in ``text``
    (markdown, or with ``plain`` every line of a script's docstring)."""
    problems, n = [], 0
    lines = text.replace("\\\n", " ").splitlines() if plain else _snippets(text)
    for line in lines:
        for m in re.finditer(r"python3? (benchmarks/[\w/]+\.py)(.*)", line):
            script, rest = root / m.group(1), re.split(r"&&|\||;|\)", m.group(2))[0]
            if not script.exists():
                problems.append(f"{m.group(1)}: no such script")
                continue
            n += 1
            known = _script_options(script)
            for tok in (t.lstrip("[") for t in rest.split()):
                name = tok.split("=")[0].rstrip(",.]")
                if tok.startswith("--") and name not in known:
                    problems.append(f"{m.group(1)}: no option {name}")
    return n, problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_tgsr_commands_exist_with_their_options(doc):
    _, problems = cli_problems(doc.read_text())
    assert problems == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_benchmark_commands_name_real_scripts_and_options(doc):
    _, problems = benchmark_problems(doc.read_text())
    assert problems == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_benchmark_scripts_usage_lines_name_real_options(script):
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    _, problems = benchmark_problems(doc, plain=True)
    assert problems == []


def test_the_docs_hold_enough_commands_for_the_check_to_mean_something():
    text = "\n".join(d.read_text() for d in DOCS)
    assert cli_problems(text)[0] >= 40
    assert benchmark_problems(text)[0] >= 40
    usage = "\n".join(ast.get_docstring(ast.parse(p.read_text())) or "" for p in SCRIPTS)
    assert benchmark_problems(usage, plain=True)[0] >= 20


def test_the_checker_sees_wrong_commands():
    text = (
        "```bash\ntgsr upscale x.png --model M --no-such-flag\ntgsr nosuch run\n"
        "tgsr quickstart --set loss.tik=0.5\n```\n"
        "Run `tgsr train --config cub_x8\n--set generator.tam_coords=true` and "
        "`python benchmarks/speed.py --device cpu --nope` and `python benchmarks/nothere.py`."
    )
    n, problems = cli_problems(text)
    assert n == 3
    assert any("--no-such-flag" in p for p in problems)
    assert any("'nosuch'" in p for p in problems)
    assert any("'loss.tik'" in p for p in problems)
    assert not any("tam_coords" in p for p in problems)
    n, problems = benchmark_problems(text)
    assert n == 1
    assert sorted(problems) == [
        "benchmarks/nothere.py: no such script",
        "benchmarks/speed.py: no option --nope",
    ]


def _all_commands(command, path="tgsr"):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _all_commands(sub, f"{path} {name}")


def help_problems(group) -> list[str]:
    """Help texts that the markdown renderer of ``--help`` would mangle: an HTML-like ``<word>``
    outside a code span is dropped (``images/<key>.png`` showed as ``images/.png``)."""
    problems = []
    for path, command in _all_commands(group):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for tag in re.findall(r"<[A-Za-z_]+>", re.sub(r"`[^`]*`", "", text)):
                problems.append(f"{path}: {tag} in {text[:60]!r}")
    return problems


def test_the_cli_help_survives_the_markdown_renderer():
    assert help_problems(typer.main.get_command(app)) == []
    bad = typer.Typer()
    bad.command("x")(lambda: None)
    bad.registered_commands[0].help = "write images/<key>.png and `<stem>.png`"
    assert help_problems(typer.main.get_command(bad)) == [
        "tgsr: <key> in 'write images/<key>.png and `<stem>.png`'"
    ]
