"""The quickstart's budget follows the CPU, and a budget too short for this CPU is called out."""

from __future__ import annotations

from typer.testing import CliRunner

from tgsr.cli.app import app
from tgsr.quickstart import (
    FAST_CPU_MINUTES,
    SLOW_CPU_MINUTES,
    default_minutes,
    slow_cpu_notice,
)


def test_default_budget_follows_fast_bf16():
    assert default_minutes(fast=True) == FAST_CPU_MINUTES < SLOW_CPU_MINUTES
    assert default_minutes(fast=False) == SLOW_CPU_MINUTES
    assert default_minutes() in (FAST_CPU_MINUTES, SLOW_CPU_MINUTES)  # this machine's


def test_notice_only_for_a_short_budget_without_fast_bf16():
    text = slow_cpu_notice(18, fast=False)
    assert text is not None and "in 18 min" in text and f"--minutes {SLOW_CPU_MINUTES:g}" in text
    assert slow_cpu_notice(18, fast=True) is None
    assert slow_cpu_notice(SLOW_CPU_MINUTES, fast=False) is None
    assert slow_cpu_notice(SLOW_CPU_MINUTES - 1, fast=False) is not None


def test_cli_help_states_both_defaults():
    out = CliRunner().invoke(app, ["quickstart", "--help"], env={"COLUMNS": "200"}).output
    assert "--minutes" in out and "18" in out and "45" in out


def test_example_inputs_of_a_rerun_replace_the_old_ones(tmp_path):
    """A second quickstart into the same --out (another --seed) leaves only its own examples."""
    from tgsr.quickstart import _write_examples

    _write_examples(tmp_path / "examples", seed=0)  # 4 examples
    second = _write_examples(tmp_path / "examples", seed=1, num=3)
    pngs = sorted(p.name for p in (tmp_path / "examples" / "lq_x8").iterdir())
    assert pngs == sorted(lq.name for lq, _, _ in second) and len(pngs) == 3
    records = (tmp_path / "examples" / "attributes.jsonl").read_text().splitlines()
    assert len(records) == 3
