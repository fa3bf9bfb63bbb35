"""The docs name only what exists (README.md, BENCHMARKS.md, docs/*.md).

Checked: every ``boomerang.x.y`` name; every ``from boomerang.x import a`` in a code block; every
short module name that opens an inline code span (``tasks.runner.plan_job``, ``core.plan``); every
``Class.member`` of a class of the package that opens one (``SampleTask.seed``); every repository
path (``src/...``, ``boomerang/...``, ``benchmarks/...``, ``scripts/...``, ``tests/...``). Each must
be a module of src/boomerang, a name defined in it (function, class, constant, re-export, lazy
export, member of a class) or an existing file. Also: every ``pip install -e`` uses
``-c constraints.txt``, and every ``boomerang CMD --flag`` / ``benchmarks/NAME.py --flag`` names a
real command and flag.

Names are resolved statically from the source (ast): the test imports neither torch nor the
modules it checks (only the torch-free parser, for the flags) and takes a second or two. It
exists so that a rename or a move in src/ cannot leave the docs naming something that is gone
(the redesign of issue 18 left several such names behind).
"""

from __future__ import annotations

import ast
import functools
import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PKG = SRC / "boomerang"
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Names the docs use on purpose although they are not in the repository, each with its reason.
NOT_IN_REPO = {
    "src/boomerang/tasks/mirror.py": "docs/runner.md's minimal example task, for the reader to write",
    "boomerang.tasks.mirror": "docs/runner.md's minimal example task, for the reader to write",
    "benchmarks/out": "the git-ignored default --out of every benchmark, made by running one",
    "benchmarks/results/gpu.json": "written by benchmarks/gpu.py on a GPU; not run yet (BENCHMARKS.md section 7)",
}

_DOTTED = re.compile(r"(?<![\w./-])boomerang(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(boomerang(?:\.\w+)*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w \t,]+))", re.M)
_PATH = re.compile(r"(?<![\w./-])(?:src|benchmarks|scripts|tests)/[\w./*-]*|(?<![\w./-])boomerang/[\w/.-]*\.py")
_SPAN = re.compile(r"`([^`\n]+)`")
_FILE_SUFFIXES = {"py", "json", "jsonl", "md", "png", "csv", "txt", "sh", "log", "safetensors"}


# ----------------------------------------------------------------------------- static resolution


def _module_path(dotted: str) -> Path | None:
    """The source file of module ``dotted`` (``boomerang.tasks.runner``), or None."""
    rel = Path(*dotted.split("."))
    for path in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _top_statements(body):
    """Module- or class-level statements, looking inside if/try/with blocks (not functions)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                 ast.ClassDef)):
                yield from _top_statements(inner)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    is_pkg = _module_path(module).name == "__init__.py"
    anchor = parts if is_pkg else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=None)
def _namespace(module: str) -> dict:
    """What module ``module`` binds at its top level: name -> a definition ``("def", node, module)``,
    ``("import", source module, source name)``, ``("module", dotted)`` or ``("lazy", source module)``."""
    path = _module_path(module)
    names: dict = {}
    for node in _top_statements(_tree(path).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = ("def", node, module)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.setdefault(n.id, ("def", node, module))
            value = node.value
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets) and isinstance(value, ast.Dict):
                for k, v in zip(value.keys, value.values):  # boomerang/__init__: name -> module, loaded on use
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                        names.setdefault(k.value, ("lazy", v.value))
        elif isinstance(node, ast.Import):
            for a in node.names:
                names.setdefault(a.asname or a.name.split(".")[0], ("module", a.name if a.asname else
                                                                    a.name.split(".")[0]))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for a in node.names:
                if a.name == "*":
                    if _module_path(source) is not None:
                        for k, v in _namespace(source).items():
                            if not k.startswith("_"):
                                names.setdefault(k, v)
                    continue
                if _module_path(f"{source}.{a.name}") is not None:
                    names.setdefault(a.asname or a.name, ("module", f"{source}.{a.name}"))
                else:
                    names.setdefault(a.asname or a.name, ("import", source, a.name))
    # lazy exports behind a module __getattr__ are listed in __all__ (boomerang.enhance, boomerang.privacy)
    if "__getattr__" in names:
        for node in _top_statements(_tree(path).body):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                    for t in node.targets):
                for n in ast.walk(node.value):
                    if isinstance(n, ast.Constant) and isinstance(n.value, str):
                        names.setdefault(n.value, ("lazy", None))
    return names


def _class_members(cls: ast.ClassDef, module: str, seen=()) -> set[str] | None:
    """Names a class defines (methods, attributes, dataclass fields, nested classes), with those of
    its bases in the package; None when a base lies outside it (its members cannot be listed)."""
    members: set[str] = set()
    for node in _top_statements(cls.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                members.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in {"object"}:
            continue
        if not isinstance(base, ast.Name):
            return None
        found = _find(module, base.id)
        if found is None or found[0] != "def" or not isinstance(found[1], ast.ClassDef) or found[1] in seen:
            return None  # a base from outside the package (NamedTuple, Exception ...)
        more = _class_members(found[1], found[2], (*seen, cls))
        if more is None:
            return None
        members |= more
    return members


def _find(module: str, name: str):
    """Follow re-exports until the definition of ``name`` as seen from ``module``."""
    for _ in range(20):
        got = _namespace(module).get(name)
        if got is None:
            return None
        if got[0] == "import" and _module_path(got[1]) is not None:
            module, name = got[1], got[2]
            continue
        if got[0] == "lazy" and got[1] is not None and _module_path(got[1]) is not None:
            module = got[1]
            continue
        return got
    return None


def unresolved(dotted: str) -> str | None:
    """Why ``dotted`` (``boomerang.tasks.runner.plan_job``) names nothing in src/; None if it does."""
    parts = dotted.split(".")
    k = len(parts)
    while k and _module_path(".".join(parts[:k])) is None:
        k -= 1
    if not k:
        return "no such module"
    module, rest = ".".join(parts[:k]), parts[k:]
    if not rest:
        return None
    got = _find(module, rest[0])
    if got is None:
        return f"{module} has no {rest[0]}"
    for i, attr in enumerate(rest[1:], start=1):
        if got[0] == "module":
            return unresolved(".".join([got[1], *rest[i:]])) if got[1].startswith("boomerang") else None
        if got[0] != "def" or not isinstance(got[1], ast.ClassDef):
            return None if got[0] in ("import", "lazy") else f"{'.'.join(parts[:k + i])} is not a class or module"
        members = _class_members(got[1], got[2])
        if members is None:
            return None  # a class with a base outside the package: cannot tell
        if attr not in members:
            return f"{'.'.join(parts[:k + i])} has no member {attr}"
        inner = next((n for n in got[1].body if isinstance(n, ast.ClassDef) and n.name == attr), None)
        if inner is None:
            return None  # a method or attribute: what follows is about its value
        got = ("def", inner, got[2])
    return None


# ----------------------------------------------------------------------------- what the docs name


def _top_level_names() -> set[str]:
    return {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}


@functools.lru_cache(maxsize=None)
def _classes() -> dict:
    """Every class defined in src/boomerang: name -> [(node, module)]."""
    found: dict = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append((node, module))
    return found


def class_member_unresolved(token: str) -> str | None:
    """Why ``Class.member`` (``SampleTask.before_load``) names nothing, for a class of the package;
    None if some class of that name has the member (or its members cannot be listed)."""
    cls, _, member = token.partition(".")
    member = member.split(".")[0]
    listed = [_class_members(node, module) for node, module in _classes().get(cls, [])]
    if not listed or any(m is None or member in m for m in listed):
        return None
    return f"{cls} has no member {member}"


def class_members_named(text: str) -> set[str]:
    """``Class.member`` at the start of an inline code span, for classes defined in the package."""
    out = set()
    for span in _SPAN.findall(text):
        m = re.match(r"([A-Z]\w*\.[A-Za-z_]\w*)", span.strip())
        if m and m.group(1).split(".")[0] in _classes():
            out.add(m.group(1))
    return out


def doc_names(text: str) -> tuple[set[str], set[str]]:
    """(dotted names, repository paths) that ``text`` mentions."""
    names = set(_DOTTED.findall(text))
    for module, in_parens, imported in _FROM_IMPORT.findall(text):
        for n in (in_parens or imported).split(","):
            n = n.split("#")[0].split()[0] if n.split() else ""
            if n:
                names.add(f"{module}.{n}")
    tops = _top_level_names()
    for span in _SPAN.findall(text):
        m = re.match(r"([a-z_]\w*(?:\.[A-Za-z_]\w*)+)", span.strip())
        if m and m.group(1).split(".")[0] in tops and m.group(1).rsplit(".", 1)[1] not in _FILE_SUFFIXES:
            names.add("boomerang." + m.group(1))
        m = re.match(r"([a-z_]\w*/[\w/.-]*\.py)$", span.strip())
        if m and m.group(1).split("/")[0] in tops:
            names.add("boomerang/" + m.group(1))
    paths = {p.rstrip(".,:;") for p in _PATH.findall(text)}
    paths |= {n for n in names if "/" in n}
    return {n for n in names if "/" not in n}, paths


def _path_exists(path: str) -> bool:
    if path.startswith("boomerang/"):
        path = "src/" + path
    if "*" in path:
        return bool(glob.glob(str(ROOT / path)))
    return (ROOT / path.rstrip("/")).exists()


def problems(doc: Path) -> list[str]:
    """What ``doc`` names that does not exist, one line each (empty: all found)."""
    text = doc.read_text(encoding="utf-8")
    names, paths = doc_names(text)
    out = []
    for n in sorted(names):
        why = None if n in NOT_IN_REPO else unresolved(n)
        if why:
            out.append(f"{n}: {why}")
    for p in sorted(paths):
        if p.rstrip("/") not in NOT_IN_REPO and not p.startswith("benchmarks/out/") and not _path_exists(p):
            out.append(f"{p}: not in the repository")
    for c in sorted(class_members_named(text)):
        why = class_member_unresolved(c)
        if why:
            out.append(f"{c}: {why}")
    return out


def test_docs_are_found_and_name_things():
    assert len(DOCS) >= 10, [d.name for d in DOCS]
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names, paths = doc_names(text)
    assert {"boomerang.tasks.runner.plan_job", "boomerang.models.loading.FAMILIES"} <= names
    assert "SampleTask.before_load" in class_members_named(text)
    assert sum(len(doc_names(d.read_text(encoding="utf-8"))[0]) for d in DOCS) > 200


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_named_thing_exists(doc):
    bad = problems(doc)
    assert not bad, f"{doc.name} names what is not in the repository:\n" + "\n".join(bad)


def test_install_commands_use_the_constraints():
    """Every ``pip install ... -e`` the docs give takes its versions from constraints.txt, as the
    README's set-up and CI do (the goldens hold only with those versions)."""
    bad = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for cmd in re.findall(r"pip install [^`\n]*", text):
            if " -e " in f" {cmd} " and "-c constraints.txt" not in cmd:
                bad.append(f"{doc.name}: {cmd}")
    assert not bad, "\n".join(bad)


def _command_lines(text: str):
    """Command lines in ``text``: the lines of its code blocks and its inline code spans."""
    text = text.replace("\\\n", " ")
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        yield from block.splitlines()
    yield from re.findall(r"`([^`\n]+)`", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S).replace("\n", " "))


#: Commands the docs show that the CLI does not have, each with its reason.
EXAMPLE_COMMANDS = {"mirror": "docs/runner.md's example task, registered by the reader"}


def test_doc_commands_use_real_flags():
    """Every ``boomerang CMD --flag`` and ``benchmarks/NAME.py --flag`` in the docs names a command
    and flags that exist: the parser's (built without torch) and the script's own."""
    from boomerang.cli import build_parser

    parser = build_parser()
    commands = {name: {o for act in sub._actions for o in act.option_strings}
                for act in parser._actions if isinstance(getattr(act, "choices", None), dict)
                for name, sub in act.choices.items()}
    common = (ROOT / "benchmarks" / "_common.py").read_text(encoding="utf-8")
    bad, seen = [], 0
    for doc in DOCS:
        for line in _command_lines(doc.read_text(encoding="utf-8")):
            for m in re.finditer(r"(?<![\w/.-])boomerang ([a-z][\w-]*)(.*)", line):
                cmd, rest = m.group(1), re.split(r"&&|\||;|>", m.group(2))[0]
                if cmd not in commands:
                    if cmd not in EXAMPLE_COMMANDS:
                        bad.append(f"{doc.name}: no command {cmd!r}: {line.strip()}")
                    continue
                seen += 1
                bad += [f"{doc.name}: boomerang {cmd} has no {f}: {line.strip()}"
                        for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest) if f not in commands[cmd]]
            for m in re.finditer(r"benchmarks/(\w+)\.py(.*)", line):
                script = ROOT / "benchmarks" / f"{m.group(1)}.py"
                source = (script.read_text(encoding="utf-8") if script.is_file() else "") + common
                bad += [f"{doc.name}: {script.name} has no {f}: {line.strip()}"
                        for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", re.split(r"&&|\||;|>", m.group(2))[0])
                        if f'"{f}"' not in source and f"'{f}'" not in source]
    assert seen > 30, seen
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("command,argv", [("enhance", ["x.png"]), ("augment", ["in_dir"])])
def test_help_says_what_a_task_refuses(command, argv):
    """A task's --help does not offer what its settings refuse: enhance and augment refuse
    --from-noise, and enhance takes only the schedulers of the exact grid (with lcm and
    euler-stochastic), on the exact schedule."""
    from boomerang.argparsing import subparser
    from boomerang.cli import build_parser
    from boomerang.errors import SettingError
    from boomerang.scheduler_names import ALL_NAMES, CUSTOM_GRID_SCHEDULERS, SCHEDULER_NAMES
    from boomerang.tasks.enhance import ENHANCE_SCHEDULERS
    from boomerang.tasks.flags import parse_task_args

    parser = build_parser()
    helps = {a.dest: a.help or "" for a in subparser(parser, command)._actions}
    assert helps["from_noise"].startswith("refused")
    with pytest.raises(SettingError, match="from_noise"):
        args = parser.parse_args([command, *argv, "--out", "o", "--from-noise"])
        parse_task_args(args.task, args)
    if command == "enhance":
        listed = set(re.findall(r"[\w+-]+", helps["scheduler"].split(":", 1)[1].split("(")[0]))
        assert listed == set(ENHANCE_SCHEDULERS) and listed < set(ALL_NAMES)
        assert set(CUSTOM_GRID_SCHEDULERS) | {"lcm", "euler-stochastic"} == listed
        assert helps["schedule"].startswith("exact only")
        refused = [["--scheduler", n] for n in sorted(set(SCHEDULER_NAMES) - set(CUSTOM_GRID_SCHEDULERS))]
        for flags in [*refused, ["--schedule", "img2img"], ["--schedule", "reference"]]:
            with pytest.raises(SettingError):
                args = parser.parse_args([command, *argv, "--out", "o", *flags])
                parse_task_args(args.task, args)


@pytest.mark.parametrize("name,why", [
    ("boomerang.jobs", "boomerang has no jobs"),
    ("boomerang.tasks.runner.prepare_job", "has no prepare_job"),
    ("boomerang.tasks.job.Job.extra", "has no member extra"),
    ("boomerang.tasks.stopping", "has no stopping"),
])
def test_resolver_refuses_what_is_gone(name, why):
    """The check can fail: names the redesign removed are reported (issue 18)."""
    got = unresolved(name)
    assert got is not None and why in got, got


def test_resolver_follows_reexports_lazies_and_members():
    for name in ("boomerang.sample", "boomerang.plan", "boomerang.imageio.read_image", "boomerang.tasks.Job",
                 "boomerang.tasks.sample.SampleTask.sample_batch", "boomerang.enhance.enhance_image",
                 "boomerang.tasks.job.JobSettings.inputs", "boomerang.models.DiffusionModel.predict",
                 "boomerang.tasks.Task.Options"):
        assert unresolved(name) is None, (name, unresolved(name))
    assert unresolved("boomerang.tasks.sample.SampleTask.no_such_hook") is not None
    names, paths = doc_names("`tasks.blocks.sample_block` and `core.plan(...)`, `tasks/layout.py`, "
                             "src/boomerang/nowhere.py\n```python\nfrom boomerang.api import prepare, gone\n```")
    assert names == {"boomerang.tasks.blocks.sample_block", "boomerang.core.plan", "boomerang.api",
                     "boomerang.api.prepare", "boomerang.api.gone"}
    assert paths == {"boomerang/tasks/layout.py", "src/boomerang/nowhere.py"}
    assert unresolved("boomerang.api.gone") is not None and not _path_exists("src/boomerang/nowhere.py")
    assert class_members_named("`SampleTask.before_load` and `PixelModel.gone(x)`, `Image.open`") == {
        "SampleTask.before_load", "PixelModel.gone"}
    assert class_member_unresolved("SampleTask.before_load") is None
    assert class_member_unresolved("SampleTask.sample_batch") is None  # inherited from Task
    assert class_member_unresolved("PixelModel.gone") == "PixelModel has no member gone"
