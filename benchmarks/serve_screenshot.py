"""Screenshots of ``boomerang serve`` after a run: serve.png (Samples tab) and
serve_sweep.png (Level sweep tab), plus the time the page took, in
serve_screenshot.json.

Starts the real command (bundled model, one torch thread) on a free local port,
drives Debian's Chromium with Playwright as a visitor would (pick the shipped
example 7.png, set the level, run; then the sweep), and stops the server.

    .venv/bin/python benchmarks/serve_screenshot.py
    .venv/bin/python benchmarks/serve_screenshot.py --out benchmarks/results --plots docs   # refresh docs/serve*.png

The JSON goes to ``--out`` (default ``benchmarks/out/``, git-ignored), the
screenshots to ``--plots`` (default: the ``--out`` folder); docs/serve.md shows
the copies in docs/. Needs the ``app`` and ``bench`` extras and /usr/bin/chromium
(scripts/setup-test-deps.sh).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from _common import add_out_argument, machine, make_parser, plot_path, save_json

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = make_parser(__doc__)
    ap.add_argument("--level", default="0.4", help="level set on the Samples tab")
    ap.add_argument("--num-samples", default="8", help="samples asked for on the Samples tab")
    ap.add_argument("--sweep", default="0.1,0.3,0.5,0.7,0.9", help="levels of the Level sweep tab")
    add_out_argument(ap, plots=True)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "boomerang.cli", "serve", "--port", str(port), "--threads", "1"],
                            env=env)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("boomerang serve exited")
                time.sleep(0.5)
        t_listen = time.perf_counter() - t0
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
            page = b.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="7.png").click()  # a shipped example
            page.wait_for_function("document.querySelector('#status').innerText.includes('ready')")
            page.locator("#level input[type=range]").fill(args.level)
            ns = page.get_by_label("number input for Samples")
            ns.fill(args.num_samples)
            ns.press("Enter")
            t1 = time.perf_counter()
            page.click("#run")
            page.wait_for_function(
                f"document.querySelectorAll('#gallery img').length >= {int(args.num_samples)}", timeout=300_000)
            page.wait_for_function("document.querySelector('#run-info').innerText.includes('t = ')")
            t_run = time.perf_counter() - t1
            page.wait_for_timeout(500)
            page.screenshot(path=str(plot_path(args, "serve.png")), full_page=True)
            page.get_by_role("tab", name="Level sweep").click()
            page.locator("#sweep-levels textarea, #sweep-levels input").first.fill(args.sweep)
            t2 = time.perf_counter()
            page.click("#sweep-run")
            page.wait_for_selector("#sheet img", timeout=300_000)
            t_sweep = time.perf_counter() - t2
            page.wait_for_timeout(500)
            page.screenshot(path=str(plot_path(args, "serve_sweep.png")), full_page=True)
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "what": "boomerang serve, bundled model, 1 torch thread; times seen from the browser",
        "level": float(args.level), "num_samples": int(args.num_samples), "steps": 50, "sweep": args.sweep,
        "seconds_until_listening": round(t_listen, 1), "seconds_sample_run": round(t_run, 1),
        "seconds_sweep_run": round(t_sweep, 1), "machine": machine(),
    }
    save_json("serve_screenshot", result, args.out)
    print(result)


if __name__ == "__main__":
    main()
