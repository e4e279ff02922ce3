"""End-to-end: the gradio demo driven in Debian's headless Chromium through Playwright.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the ``playwright`` Python package
(no browser download: Playwright is pointed at Debian's Chromium). ``TGSR_DEMO_MODEL=DIR`` runs
it on a real model folder instead of the tiny random one; ``TGSR_UPDATE_DOCS=1`` copies the
screenshot to ``docs/images/demo.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from helpers_pipeline import make_pipeline_dir, natural_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # pandas notes inside gradio
]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DOCS_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"
TIMEOUT_MS = 120_000


def _requirements():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    return sync_playwright


def _natural_size(page, elem_id: str):
    return page.evaluate(
        f"() => {{ const i = document.querySelector('#{elem_id} img');"
        " return i ? [i.naturalWidth, i.naturalHeight] : null; }"
    )


def test_demo_upload_caption_click_in_chromium(tmp_path):
    sync_playwright = _requirements()
    from tgsr.demo import launch
    from tgsr.pipeline import TGSRPipeline

    model = os.environ.get("TGSR_DEMO_MODEL") or make_pipeline_dir(tmp_path, scale=4)
    pipe = TGSRPipeline.from_pretrained(model)
    h, w = 12, 16
    upload = tmp_path / "input.png"
    Image.fromarray(natural_image(h, w, seed=5)).save(upload)
    expected = [w * pipe.scale, h * pipe.scale]
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")

    demo, url = launch(pipe, host="127.0.0.1", port=0, block=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                page.wait_for_selector("#lq input[type=file]", state="attached")
                page.set_input_files("#lq input[type=file]", str(upload))
                page.wait_for_selector("#lq img")
                page.fill("#caption textarea", "a red and cyan striped circle")
                page.click("#run")
                page.wait_for_function(
                    "() => { const i = document.querySelector('#sr img');"
                    " return i && i.complete && i.naturalWidth > 0; }"
                )
                assert _natural_size(page, "sr") == expected
                assert _natural_size(page, "bicubic") == expected
                page.get_by_text(f"Output: {expected[0]}x{expected[1]}").wait_for()
                if pipe.use_text:  # one attention map per word
                    page.wait_for_function(
                        "() => document.querySelectorAll('#attention img').length >= 6"
                    )

                # several captions: one output per caption
                page.fill("#caption textarea", "a red and cyan striped circle\na blue square")
                page.click("#run")
                page.wait_for_function("() => document.querySelectorAll('#edits img').length >= 2")
                # the run is over once no component shows gradio's pending overlay
                page.wait_for_function("() => !document.querySelector('.pending, .generating')")
                page.wait_for_timeout(1000)  # the outputs fade back in from the pending state
                shot = tmp_path / "demo.png"
                page.screenshot(path=str(shot), full_page=True)
                if os.environ.get("TGSR_DEMO_SHOTS"):  # for looking at the layout
                    shutil.copyfile(shot, Path(os.environ["TGSR_DEMO_SHOTS"]) / "demo.png")
                assert Image.open(shot).size[0] == 1280

                # an unknown word: the whole warning shows ("<unk>" is not read as a tag)
                page.fill("#caption textarea", "a zzqx circle")
                page.click("#run")
                page.get_by_text("read as <unk>: zzqx", exact=False).first.wait_for()

                # a friendly message instead of a crash for an over-long caption, and the
                # previous outputs are cleared (no stale image or "Output: ..." note)
                page.fill("#caption textarea", "word " * 60)
                page.click("#run")
                page.get_by_text("the limit is", exact=False).first.wait_for()
                page.wait_for_function("() => !document.querySelector('#sr img')")
                assert "Output:" not in page.inner_text("#notes")

                # a file that is not an image, named .png: the demo's own one-line message
                page.set_input_files("#lq input[type=file]", str(not_image))
                page.fill("#caption textarea", "a circle")
                page.click("#run")
                page.get_by_text("not an image the demo can read", exact=False).first.wait_for()
                assert "Could not preprocess" not in page.content()
                shot_error = tmp_path / "demo_error.png"
                page.screenshot(path=str(shot_error), full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
    if os.environ.get("TGSR_UPDATE_DOCS") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
