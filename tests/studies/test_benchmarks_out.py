"""Benchmark scripts follow one output rule and their documented commands work as written.

* Every ``benchmarks/*.py`` that writes files takes ``--out DIR`` (and ``--plots DIR``
  if it draws figures or screenshots), parses its flags before importing torch, and
  by default writes into ``benchmarks/out/``, which git ignores: running a benchmark
  never rewrites the committed ``benchmarks/results/`` or ``docs/``.
* Every ``python benchmarks/X.py ...`` command in README.md, BENCHMARKS.md and docs/
  runs the set-up's ``.venv/bin/python`` and uses only flags the script has.
* The README's set-up installs the ``bench`` extra, and that extra (with the core
  dependencies) covers every third-party module the scripts import.

* Every option of every script has a help text, and ``--help`` shows the default of
  every option that takes a value.

No benchmark runs: each script is started with ``--help`` only (well under a second each).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
# They copy a training run into src/boomerang/assets/ on purpose (their docstrings say so).
ASSET_BUILDERS = {"bundle_assets.py", "bundle_flow.py", "bundle_ldm.py", "bundle_photo_model.py"}
WRITES = re.compile(r"save_json\(|\.write_text\(|\.write_bytes\(|savefig\(|\.screenshot\(|open\([^)]*[\"'][wa]")
PLOTS = re.compile(r"savefig\(|\.screenshot\(")
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

# Runs a script as `python benchmarks/X.py --help` would (its folder first on sys.path),
# then reports whether torch was imported before argparse exited.
_HELP = """
import io, json, runpy, sys, contextlib
path = sys.argv[1]
sys.path.insert(0, sys.argv[2])
sys.argv = [path, "--help"]
import argparse
options = []
print_help = argparse.ArgumentParser.print_help
def record(self, file=None):  # every option of the parser that answers --help, as its --help shows it
    fmt = self._get_formatter()
    for a in self._actions:
        if a.option_strings and a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction):
            options.append({"flags": a.option_strings, "help": fmt._expand_help(a) if a.help else "",
                            "switch": a.nargs == 0})
    return print_help(self, file)
argparse.ArgumentParser.print_help = record
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit:
        pass
print(json.dumps({"help": buf.getvalue(), "torch": "torch" in sys.modules, "options": options}))
"""


def _help(script: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _HELP, str(script), str(BENCH)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, f"{script.name} --help failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def helps() -> dict[str, dict]:
    with ThreadPoolExecutor(4) as pool:
        return dict(zip((s.name for s in SCRIPTS), pool.map(_help, SCRIPTS)))


def test_every_writing_script_takes_out_and_plots(helps):
    writers = [s for s in SCRIPTS if WRITES.search(s.read_text(encoding="utf-8")) and s.name not in ASSET_BUILDERS]
    assert len(writers) >= 15, [s.name for s in writers]  # the search finds the scripts at all
    for s in writers:
        h = helps[s.name]
        assert "--out DIR" in h["help"], f"{s.name} has no --out DIR"
        if PLOTS.search(s.read_text(encoding="utf-8")):
            assert "--plots DIR" in h["help"], f"{s.name} draws figures but has no --plots DIR"
        assert not h["torch"], f"{s.name} imports torch before parsing its flags (slow --help)"
        src = s.read_text(encoding="utf-8")
        for old in ("--out-json", "--out-plot", '"docs" /', "RESULTS"):
            assert old not in src, f"{s.name} still writes by the old rule ({old})"


def test_every_option_of_every_script_has_help_and_shows_its_default(helps):
    """``--help`` of each script explains every option and, for options that take a value, its default."""
    assert len(helps) == len(SCRIPTS) >= 19
    for name, h in helps.items():
        assert h["options"], f"{name}: --help listed no options"
        for o in h["options"]:
            flag = o["flags"][-1]
            text = o["help"].strip()
            assert len(text) >= 8, f"{name} {flag}: no help text"
            if not o["switch"]:
                assert "(default: " in text or "default: " in text, f"{name} {flag}: --help does not show its default"
                assert "(default: None)" not in text and "(default: )" not in text, f"{name} {flag}: {text!r}"


def test_asset_builders_say_why_they_write_into_the_package():
    for name in ASSET_BUILDERS:
        doc = ast.get_docstring(ast.parse((BENCH / name).read_text(encoding="utf-8")))
        assert "src/boomerang/assets" in doc and "on purpose" in doc, name


# The output rule of benchmarks/_common.py, exercised in a process of its own with benchmarks/ first on
# sys.path, as a script has it (tests import no benchmark file): the defaults, then save_json and plot_path.
_OUT_RULE = """
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
import _common
tmp = __import__("pathlib").Path(sys.argv[2])
ap = argparse.ArgumentParser()
_common.add_out_argument(ap, plots=True)
default = ap.parse_args([])
args = ap.parse_args(["--out", str(tmp / "o"), "--plots", str(tmp / "p")])
path = _common.save_json("r", {"a": 1}, args.out)
print(json.dumps({"OUT": str(_common.OUT), "default_out": str(default.out), "default_plots": default.plots,
                  "plot_of_out": str(_common.plot_path(argparse.Namespace(out=tmp, plots=None), "f.png")),
                  "saved": str(path), "plot": str(_common.plot_path(args, "f.png"))}))
"""


def test_default_out_is_git_ignored_and_save_json_writes_there(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _OUT_RULE, str(BENCH), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    out = Path(got["OUT"])
    assert out == BENCH / "out"
    rel = out.relative_to(ROOT) / "x.json"
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode == 0:
        assert subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=ROOT).returncode == 0, rel
    else:  # an unpacked copy without .git: the pattern must still be there
        assert "benchmarks/out/" in (ROOT / ".gitignore").read_text().splitlines()

    assert Path(got["default_out"]) == out and got["default_plots"] is None
    assert Path(got["plot_of_out"]) == tmp_path / "f.png"
    path = Path(got["saved"])
    assert path == tmp_path / "o" / "r.json" and json.loads(path.read_text()) == {"a": 1}
    assert Path(got["plot"]) == tmp_path / "p" / "f.png" and (tmp_path / "p").is_dir()


def _commands():
    """(file, interpreter, script, rest of the line) of every `... benchmarks/X.py ...` command in the docs."""
    pat = re.compile(r"([\w./]*python)\s+benchmarks/(\w+\.py)([^`\n]*)")
    for doc in DOCS:
        for m in pat.finditer(doc.read_text(encoding="utf-8")):
            yield doc.relative_to(ROOT), m.group(1), m.group(2), m.group(3)


def test_documented_benchmark_commands_work_as_written(helps):
    cmds = list(_commands())
    assert len(cmds) >= 20, cmds
    for doc, python, script, rest in cmds:
        where = f"{doc}: {python} benchmarks/{script}{rest}"
        assert python == ".venv/bin/python", f"{where}: use .venv/bin/python (the README's set-up) from the root"
        assert script in helps, f"{where}: no such script"
        rest = re.split(r"\s[>#|&]", rest)[0]  # a redirect or a shell comment ends the flags
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest):
            assert re.search(rf"(?<![\w-]){flag}\b", helps[script]["help"]), f"{where}: {script} has no {flag}"


def _dists(spec: str) -> str:
    return re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower()


def test_readme_setup_and_bench_extra_cover_what_the_scripts_import():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r'\.venv/bin/pip install torch==[\d.]+ -e "\.\[bench\]"', readme)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    have = {_dists(d) for d in project["dependencies"] + project["optional-dependencies"]["bench"]}
    # import name -> distribution; scipy comes with scikit-image
    dist_of = {"PIL": "pillow", "pywt": "pywavelets", "skimage": "scikit-image", "scipy": "scikit-image", "sklearn": "scikit-learn"}
    local = {"boomerang", *(p.stem for p in BENCH.glob("*.py"))}  # the package, the scripts and their _helpers
    seen = set()
    for s in SCRIPTS:
        for node in ast.walk(ast.parse(s.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "__future__":
                    continue
                seen.add(top)
                assert dist_of.get(top, top).lower() in have, f"{s.name} imports {top}: not in the bench extra"
    assert {"torch", "matplotlib", "playwright"} <= seen, seen


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _path_calls(path: Path) -> list[str]:
    """Every call that puts a folder on sys.path or loads a file as a module, as source text."""
    loaders = ("sys.path.insert", "sys.path.append", "syspath_prepend", "spec_from_file_location", "run_path",
               "import_module", "SourceFileLoader")
    return [ast.unparse(node) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(loaders)]


def test_tests_never_import_benchmarks_and_benchmarks_never_import_tests():
    """What both need lives in the package (boomerang.testing, boomerang.stats, boomerang.studies): tests run
    a benchmark only as a program, in a process of its own, and benchmarks put only their own folder on sys.path."""
    tests = ROOT / "tests"
    bench_modules = {p.stem for p in BENCH.glob("*.py")}
    test_modules = {p.stem for p in tests.rglob("*.py")} | {"tests", "conftest"}
    for p in sorted(BENCH.glob("*.py")):
        assert not _imports(p) & test_modules, f"{p.name} imports {_imports(p) & test_modules} from tests/"
        for call in _path_calls(p):
            assert "tests" not in call, f"{p.name}: {call}"
    for p in sorted(tests.rglob("*.py")):
        where = p.relative_to(ROOT)
        assert not _imports(p) & bench_modules, f"{where} imports {_imports(p) & bench_modules} from benchmarks/"
        for call in _path_calls(p):
            assert "BENCH" not in call and "benchmarks" not in call, f"{where}: {call}"
