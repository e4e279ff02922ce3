"""`tgsr fetch niqe`: the standard NIQE pristine-model parameters, from the package registry.

The parameters (``niqe_pris_params.npz``: ``mu_pris_param`` (1, 36), ``cov_pris_param``
(36, 36), ``gaussian_window`` (7, 7)) ship inside the source distribution of basicsr on PyPI.
This command runs ``python -m pip download basicsr==<version> --no-deps --no-binary :all:
--no-build-isolation`` into a temporary folder and extracts that one data file from the
tarball; no basicsr code is kept or imported. (``--no-build-isolation`` stops pip from
installing torch into a throwaway build environment just to read the sdist's metadata.)
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import typer

from tgsr.errors import TGSRError

# tgsr.evaluation.niqe is imported inside `niqe`: it pulls in torch (~3-4 s), which
# `tgsr --help` should not wait for.

BASICSR_VERSION = "1.4.2"
NPZ_MEMBER = "basicsr/metrics/niqe_pris_params.npz"
# sha256 of the file inside basicsr-1.4.2.tar.gz (checked only for that version)
NPZ_SHA256 = {"1.4.2": "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"}


def _pip_download(version: str, into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", f"basicsr=={version}",
        "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "-d", str(into),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TGSRError(f"could not run pip ({exc}); run `{' '.join(cmd[2:])}` by hand") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "no module named" in ln.lower()]
        last = (errors or lines or ["no output"])[0 if errors else -1]
        raise TGSRError(f"`pip download basicsr=={version}` failed: {last}")
    tarballs = sorted(into.glob("basicsr-*.tar.gz"))
    if not tarballs:
        raise TGSRError(f"pip downloaded no basicsr source tarball into {into}")
    return tarballs[0]


def extract_npz(tarball: Path) -> bytes:
    """The bytes of ``basicsr/metrics/niqe_pris_params.npz`` inside an sdist tarball."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith("/" + NPZ_MEMBER):
                    f = tar.extractfile(member)
                    if f is not None:
                        return f.read()
    except (OSError, tarfile.TarError) as exc:
        raise TGSRError(f"cannot read {tarball.name}: {exc}") from None
    raise TGSRError(
        f"{tarball.name} holds no {NPZ_MEMBER}; try --basicsr-version {BASICSR_VERSION}"
    )


def _check_npz(data: bytes) -> None:
    try:
        with np.load(io.BytesIO(data)) as npz:
            mu, cov = npz["mu_pris_param"], npz["cov_pris_param"]
    except (OSError, ValueError, KeyError) as exc:
        raise TGSRError(f"the extracted {NPZ_MEMBER} is not the expected file: {exc}") from None
    if mu.size != 36 or cov.shape != (36, 36):
        raise TGSRError(f"unexpected NIQE parameter shapes: mu {mu.shape}, cov {cov.shape}")


def niqe(
    dest: Path | None = typer.Option(
        None,
        "--dest",
        help="Folder to write niqe_pris_params.npz into "
        "(default: $TGSR_NIQE_PARAMS, else ~/.cache/tgsr/niqe_pris_params.npz).",
    ),
    basicsr_version: str = typer.Option(
        BASICSR_VERSION, "--basicsr-version", help="basicsr sdist to take the file from."
    ),
) -> None:
    """Fetch the standard NIQE pristine-model parameters (a data file from basicsr's PyPI sdist)."""
    from tgsr.evaluation.niqe import PARAMS_FILE, niqe_params_path

    target = Path(dest).expanduser() / PARAMS_FILE if dest is not None else niqe_params_path()
    with tempfile.TemporaryDirectory(prefix="tgsr-fetch-") as tmp:
        tarball = _pip_download(basicsr_version, Path(tmp))
        data = extract_npz(tarball)
    _check_npz(data)
    digest = hashlib.sha256(data).hexdigest()
    expected = NPZ_SHA256.get(basicsr_version)
    if expected is not None and digest != expected:
        raise TGSRError(
            f"{NPZ_MEMBER} from basicsr {basicsr_version} has sha256 {digest}, expected {expected}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:
        raise TGSRError(f"cannot write {target}: {exc.strerror or exc}") from None
    typer.echo(
        f"NIQE pristine parameters (basicsr {basicsr_version}, sha256 {digest[:12]}) -> {target}"
    )
    if dest is not None and target != niqe_params_path():
        typer.echo(f"point tgsr at it with: export TGSR_NIQE_PARAMS={target}")
