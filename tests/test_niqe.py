"""NIQE (Mittal et al. 2013) and `tgsr fetch niqe`."""

from __future__ import annotations

import io
import math
import subprocess
import tarfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tgsr.cli import fetch
from tgsr.cli.app import app
from tgsr.data.degradations import lowpass
from tgsr.errors import TGSRError
from tgsr.evaluation import niqe as N


def _pink(seed: int, size: int = 192) -> torch.Tensor:
    """A 1/f ("natural-like") colour image, (3, size, size) in [0, 1]."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    chans = []
    for _ in range(3):
        spec = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / radius
        x = np.real(np.fft.ifft2(spec))
        chans.append((x - x.mean()) / x.std())
    return torch.from_numpy(0.5 + 0.15 * np.stack(chans)).float().clamp(0, 1)


@pytest.fixture(scope="module")
def synthetic_model() -> N.NIQEModel:
    return N.fit_pristine_model([_pink(seed) for seed in range(1, 7)])


@pytest.fixture
def no_params(tmp_path, monkeypatch):
    monkeypatch.setenv(N.PARAMS_ENV, str(tmp_path / "absent.npz"))


def test_gaussian_window():
    w = N.gaussian_window()
    assert w.shape == (7, 7) and w.sum() == pytest.approx(1.0)
    assert w[3, 4] / w[3, 3] == pytest.approx(math.exp(-1 / (2 * (7 / 6) ** 2)))


def test_aggd_fit_recovers_known_shapes():
    rng = np.random.default_rng(0)
    alpha, bl, br = N._aggd_fit(rng.standard_normal(200_000))
    assert alpha == pytest.approx(2.0, abs=0.05)
    assert bl == pytest.approx(math.sqrt(2), rel=0.03) and br == pytest.approx(
        math.sqrt(2), rel=0.03
    )
    alpha, _, _ = N._aggd_fit(rng.laplace(size=200_000))
    assert alpha == pytest.approx(1.0, abs=0.05)
    assert all(math.isnan(v) for v in N._aggd_fit(np.ones(10)))


def test_mscn_of_a_flat_image_is_zero():
    coeffs, sigma = N.mscn(np.full((20, 30), 100.0))
    assert np.abs(coeffs).max() < 1e-9 and np.abs(sigma).max() < 1e-4


def test_features_shape():
    feats, sharp = N.niqe_features(N.to_grey(_pink(0, 200)))  # cropped to 2x2 patches
    assert feats.shape == (4, 36) and sharp.shape == (4,)
    assert np.isfinite(feats).all()


def test_small_images_are_not_scored(no_params):
    img = torch.rand(3, 64, 64)
    assert N.niqe(img) is None  # before any parameter lookup
    reason = N.niqe_skip_reason(64, 64, border=8)
    assert reason is not None and "smaller than 96x96" in reason
    value, why = N.mean_niqe(torch.rand(2, 3, 64, 64), border=8)
    assert value is None and why.startswith("n/a (images smaller than 96x96")
    assert N.niqe_skip_reason(112, 112, border=8) is None


def test_missing_params_raise_a_clear_error(no_params):
    ok, message = N.niqe_available()
    assert not ok and "tgsr fetch niqe" in message
    with pytest.raises(TGSRError, match="tgsr fetch niqe"):
        N.niqe(_pink(0, 96))
    value, why = N.mean_niqe([_pink(0, 96)])
    assert value is None and why.startswith("unavailable") and "tgsr fetch niqe" in why


def test_blur_and_noise_raise_niqe(synthetic_model):
    sharp = _pink(0)
    blurred = lowpass(sharp[None], 2.0)[0]
    noisy = sharp + 0.08 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(0))
    q_sharp = N.niqe(sharp, model=synthetic_model)
    assert q_sharp < N.niqe(blurred, model=synthetic_model)
    assert q_sharp < N.niqe(noisy.clamp(0, 1), model=synthetic_model)
    # deterministic, and the uint8 numpy path gives the same number
    assert N.niqe(sharp, model=synthetic_model) == q_sharp
    as_u8 = (sharp.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert N.niqe(as_u8, model=synthetic_model) == pytest.approx(q_sharp, abs=1e-9)


def test_params_file_round_trip(synthetic_model, tmp_path, monkeypatch):
    path = tmp_path / "pris.npz"
    synthetic_model.save(path)
    monkeypatch.setenv(N.PARAMS_ENV, str(path))
    assert N.niqe_available()[0]
    loaded = N.load_pristine_model()
    np.testing.assert_allclose(loaded.mu, synthetic_model.mu)
    value, why = N.mean_niqe(torch.stack([_pink(0, 96), _pink(1, 96)]))
    assert why is None and value == pytest.approx(
        (N.niqe(_pink(0, 96), model=loaded) + N.niqe(_pink(1, 96), model=loaded)) / 2
    )


def test_with_the_standard_params_when_fetched(monkeypatch):
    monkeypatch.delenv(N.PARAMS_ENV, raising=False)
    if not N.niqe_params_path().is_file():
        pytest.skip("standard NIQE parameters not fetched (run `tgsr fetch niqe`)")
    with np.load(N.niqe_params_path()) as data:
        np.testing.assert_allclose(data["gaussian_window"], N.gaussian_window(), atol=1e-12)
    sharp = _pink(0)
    assert N.niqe(sharp) < N.niqe(lowpass(sharp[None], 2.0)[0])


# ----------------------------------------------------------------------------- fetch


def _sdist(tmp_path, member: str | None) -> bytes:
    """A fake sdist tarball holding ``member`` (a valid params file), and its npz bytes."""
    buf = io.BytesIO()
    N.NIQEModel(mu=np.arange(36.0), cov=np.eye(36)).save(buf)
    data = buf.getvalue()
    tarball = tmp_path / "basicsr-9.9.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        if member:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return data


def test_fetch_extracts_the_npz(tmp_path, monkeypatch):
    data = _sdist(tmp_path, "basicsr-9.9/basicsr/metrics/niqe_pris_params.npz")

    def fake_download(version, into):
        target = into / "basicsr-9.9.tar.gz"
        target.write_bytes((tmp_path / "basicsr-9.9.tar.gz").read_bytes())
        return target

    monkeypatch.setattr(fetch, "_pip_download", fake_download)
    dest = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["fetch", "niqe", "--dest", str(dest), "--basicsr-version", "9.9"]
    )
    assert result.exit_code == 0, result.output
    written = dest / "niqe_pris_params.npz"
    assert written.read_bytes() == data and str(written) in result.output
    monkeypatch.setenv(N.PARAMS_ENV, str(written))
    assert N.load_pristine_model().mu[5] == 5.0


def test_fetch_reports_a_missing_member(tmp_path):
    _sdist(tmp_path, "basicsr-9.9/README.md")
    with pytest.raises(TGSRError, match="holds no basicsr/metrics/niqe_pris_params.npz"):
        fetch.extract_npz(tmp_path / "basicsr-9.9.tar.gz")


def test_fetch_reports_pip_failure_in_one_line(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "blah\nERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(TGSRError, match="failed: ERROR: No matching distribution"):
        fetch._pip_download("1.4.2", tmp_path)
