"""``boomerang serve`` in a real browser: Playwright drives Debian's Chromium (headless).

The test starts the real command on a free local port (a subprocess, the
bundled model), then as a visitor would: uploads a shipped digit, moves the
level slider and reads the timestep and alpha_bar it shows, runs, waits for the
gallery, checks the images against the downloadable zip and metadata.json,
uploads a truncated JPEG and reads the CLI's one-line message in the page, and
checks the server still serves. The page must make no request off this machine.

Needs ``/usr/bin/chromium`` (``scripts/setup-test-deps.sh`` installs it, as the
README's test command and CI do) and the ``app`` and ``test`` extras.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parents[1] / "data" / "cases"
DIGIT = ROOT / "examples" / "digits" / "7.png"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium tries to reach Google's hosts at every start.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180  # imports of gradio + torch on a busy 2-core machine; ~15 s when idle
RUN_TIMEOUT_MS = 90_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``boomerang serve`` on a free port; yields (url, process); stopped at the end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "boomerang.cli", "serve", "--port", str(port),
                                 "--threads", "1"], stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"boomerang serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail(f"boomerang serve did not listen within {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.5)
    yield url, proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"boomerang serve did not stop on SIGTERM:\n{log.read_text()}")
    # SIGTERM stops it like Ctrl-C: its run folders are gone, and it says so in its own words.
    said = log.read_text()
    root = re.search(r"run folders in (\S+)", said).group(1)
    assert not Path(root).exists(), root
    assert proc.returncode == 0, said
    assert f"boomerang serve: open http://127.0.0.1:{url.rsplit(':', 1)[1]}" in said and "boomerang serve: stopped" in said
    assert "share=True" not in said and "Keyboard interruption" not in said and "Closing server" not in said, said


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-test-deps.sh (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def _cli_error_line(case: str, tmp_path: Path) -> str:
    """What ``boomerang sample CASE`` prints, run next to the file (no model is loaded for a bad file)."""
    out = subprocess.run([sys.executable, "-m", "boomerang.cli", "sample", case, "--out", str(tmp_path / "never")],
                         cwd=CASES, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2, out.stderr
    return out.stderr.strip()


def test_page_in_a_real_browser(server, browser, tmp_path):
    from boomerang.models import read_model_info
    from boomerang.schedulers import make_scheduler

    url, proc = server
    info = read_model_info(None)  # the bundled model the server runs
    alphas = make_scheduler("ddpm", _scheduler_config(info)).alphas_cumprod.double()

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    outside = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith((url.rstrip("/"), "data:", "blob:")) else None)
    page.goto(url)
    page.wait_for_selector("#level input[type=range]")

    # 1. Upload a shipped digit: the page shows it as the model reads it.
    page.set_input_files("#input-file input[type=file]", str(DIGIT))
    page.wait_for_function("document.querySelector('#status').innerText.includes('ready')")
    assert "7.png: 28 x 28 pixels, ready" in page.inner_text("#status")
    page.wait_for_selector("#input-preview img")

    # 2. Move the slider (set it, then one arrow-key step of 0.001): the read-out follows.
    slider = page.locator("#level input[type=range]")
    slider.fill("0.25")
    slider.focus()
    page.keyboard.press("ArrowRight")
    t = round(0.251 * (info.num_train_timesteps - 1))  # 251
    shown = f"level 0.251 → t = {t} · alpha_bar = {float(alphas[t]):.4f}"
    page.wait_for_function(f"document.querySelector('#level-info').innerText.includes({json.dumps(shown)})")

    # 3. Fewer steps for speed, then run and wait for the gallery.
    steps = page.get_by_label("Steps (budget of a full chain)")
    steps.fill("10")
    steps.press("Tab")
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 4", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#run-info').innerText.includes('t = ')")
    run_info = page.inner_text("#run-info")
    assert f"level 0.251 → t = {t} · alpha_bar = {float(alphas[t]):.4f} · 3 denoiser evaluations · 4 samples" \
        in run_info, run_info

    # 4. The images: what the gallery shows is byte for byte the run's files (the zip and metadata.json).
    links = page.locator("#downloads a")
    page.wait_for_function("document.querySelectorAll('#downloads a').length == 2")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    meta = json.loads(page.request.get(next(h for h in hrefs if h.endswith("metadata.json"))).body())
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(next(h for h in hrefs if h.endswith(".zip"))).body()))
    assert [r["timestep"] for r in meta["samples"]] == [t] * 4
    assert meta["command"][:2] == ["boomerang", "sample"] and "--level=0.251" in meta["command"]
    srcs = page.eval_on_selector_all("#gallery img", "els => els.map(e => e.src)")[:4]
    for src, rec in zip(srcs, meta["samples"]):
        data = page.request.get(src).body()
        assert data == archive.read(rec["file"]), rec["file"]
        im = Image.open(io.BytesIO(data))
        assert im.size == (28, 28) and im.mode == "L"
    assert len({page.request.get(s).body() for s in srcs}) == 4  # four different samples

    # 5. A broken upload: the CLI's one line, in the page; runs refuse it with the same line.
    line = _cli_error_line("truncated.jpg", tmp_path)
    page.click("#input-file button[aria-label='Clear']")  # as a visitor would: clear, then upload
    page.set_input_files("#input-file input[type=file]", str(CASES / "truncated.jpg"))
    page.wait_for_function(f"document.querySelector('#status').innerText.includes({json.dumps(line)})")
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#gallery img').length == 0", timeout=RUN_TIMEOUT_MS)
    assert page.inner_text("#status").strip() == line

    # 6. The server keeps serving: a fresh page, a new upload, a new run.
    assert proc.poll() is None
    page2 = browser.new_page()
    page2.goto(url)
    page2.set_input_files("#input-file input[type=file]", str(ROOT / "examples" / "digits" / "2.png"))
    page2.wait_for_function("document.querySelector('#status').innerText.includes('ready')")
    page2.get_by_label("Steps (budget of a full chain)").fill("4")
    page2.click("#run")
    page2.wait_for_function("document.querySelectorAll('#gallery img').length >= 4", timeout=RUN_TIMEOUT_MS)
    assert re.search(r"done: 4 samples", page2.inner_text("#status"))
    assert outside == [], f"the page reached outside this machine: {outside}"


def _scheduler_config(info) -> dict:
    return json.loads((Path(info.source) / "scheduler" / "scheduler_config.json").read_text())
