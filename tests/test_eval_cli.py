"""`tgsr eval` from the command line: what it accepts and what it prints."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from helpers_pipeline import make_run_dir
from tgsr.cli.app import app
from tgsr.errors import TGSRError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("eval") / "run", scale=4)


def test_a_pipeline_folder_is_refused_with_the_run_it_came_from(run_dir, tmp_path):
    model = tmp_path / "model"
    assert CliRunner().invoke(app, ["export", str(run_dir), "--out", str(model)]).exit_code == 0
    result = CliRunner().invoke(app, ["eval", "--model", str(model), "--out", str(tmp_path / "e")])
    assert isinstance(result.exception, TGSRError)  # `tgsr` prints it as one line, exit 2
    message = str(result.exception)
    assert "is a pipeline folder" in message
    assert f"exported from {run_dir}" in message
    assert not (tmp_path / "e").exists()


def test_r_precision_note_is_printed_once_without_a_python_warning(run_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        ["eval", "--model", str(run_dir), "--out", str(tmp_path / "e"), "--no-bicubic",
         "--set", "eval.num_images=4", "--set", "eval.batch_size=4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("note: R-precision: only 4 captions") == 1
    assert "UserWarning" not in text
    assert (tmp_path / "e" / "report.html").is_file()
