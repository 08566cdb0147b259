"""The user-facing texts stay true (issue 20): every repository path that the README, `docs/` and
the entry points' `--help` texts name exists, every flag their commands pass is one the program
takes, every `make` target exists, and every link and anchor resolves.

Which paths are checked, and against what (the rule):

- A *repository path* is a token that starts with a top-level name of this repository (`options/`,
  `scripts/`, `train.py`, `docs/`, ...; from `git ls-files`) or with `data/` or `.venv/`. Anything
  else (`clip.mp4`, `W.pth`, `results/clip`, `out/`) is the user's own file or an output folder the
  user names, and is not checked. Placeholders (`<name>`, `*`, `...`, `$VAR`) are skipped and brace
  lists (`iconvsr_{reds,vimeo}_baseline.yml`) are expanded.
- A repository path must be in git (tracked, or new and not ignored), except paths that a
  command of the project creates, which a fresh clone lacks:
  - `.venv/bin/...`, `.venv/basicsr_ref/...`: made by `make` (the Makefile's `VENV`).
  - `data/...`: user data. The path must lie under one of `DATA_MADE` (folders and files that a
    shipped command writes: the writer must name the path, and a sub-folder must be one the
    writers name) or `DATA_DOWNLOADED` (the public datasets and BasicSR's released weights, whose
    layout `docs/data.md` documents: each must be named there). `data/` itself is never read
    here: the checks hold on a fresh clone.
  - `experiments/<name>/...`: the run folder `train.py` makes for the options file whose `name:` is
    `<name>`; a checkpoint in it (`models/net_g_<N>.pth`, `training_states/<N>.state`) must be
    one that run writes (N = total_iter, or a multiple of save_checkpoint_freq below it).
    `experiments/runs/...`: the ablation runner's run folders.
  - `experiments/results/<scale>/README.md`: the runner's one-page summary, for a scale that a
    built-in table declares (written by `python -m experiments.run all --scale <scale>`).
  - `GENERATED`: other outputs, each with the script that writes it (which must name it).
- `module/path.attribute` names an attribute of `module/path.py`; `EXTERNAL` lists the paths of
  other projects (BasicSR's scripts) that a text names on purpose.
- Links in Markdown files resolve relative to the file; `#anchors` must match a heading.
- Dotted `vsr_accel.` names in code spans and `--help` texts must name a module, or a name defined
  in one (modules moved in the structure refactor).

Flags: in every command of a code block or inline code span of the README and `docs/`, and in
the example lines of every `--help`, each flag after an entry point (`train.py`, `infer.py`,
`scripts/*.py`, `benchmarks/*.py`, `-m experiments.run`) must appear in that entry point's
`--help`; a flag of a shell script must appear in the script. `PENDING_FLAGS` lists flags the docs
describe ahead of the code (features in flight on another branch); the list should be empty on
main once those branches are merged.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_LINES = 250
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

DATA_MADE = {  # data/ path -> the files that write it (the first names the path itself)
    "data/demo": ("Makefile", "scripts/make_demo_data.py"),
    "data/proxy": ("Makefile", "scripts/make_demo_data.py"),
    "data/proxy1280": ("benchmarks/gpu_ab.sh", "scripts/make_demo_data.py"),
    "data/pretrained/spynet_synthetic.pth": ("scripts/pretrain_spynet.py",),
}
DATA_DOWNLOADED = (  # the user's downloads, laid out as docs/data.md says
    "data/REDS", "data/REDS4", "data/vimeo90k", "data/Vid4", "data/UDM10",
    "data/pretrained/spynet_sintel_final-3d2a1287.pth",
    "data/pretrained/EDVR_REDS_pretrained_for_IconVSR-f62a2f1e.pth",
    "data/pretrained/EDVR_Vimeo90K_pretrained_for_IconVSR-ee48ee92.pth",
)
DATA_DOC = REPO / "docs" / "data.md"
GENERATED = {  # other outputs -> the script that writes them
    "benchmarks/results/gpu": "benchmarks/gpu_check.sh",
    "benchmarks/results/gpu/ab": "benchmarks/gpu_ab.sh",
}
EXTERNAL = {  # paths of other projects, named on purpose -> whose
    "scripts/data_preparation/create_lmdb.py": "BasicSR's",
}
PENDING_FLAGS: dict[str, set[str]] = {}  # entry point -> flags documented ahead of their branch

ENTRY_MODULES = ("experiments.run",)
PLACEHOLDER = re.compile(r"[<>*$]|\.\.\.")
BRACES = re.compile(r"\{([\w.\-]+(?:,[\w.\-]+)+)\}")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MODULE = re.compile(r"(?<![\w./])vsr_accel(?:\.\w+)+")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


# -- the repository --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def repo_files() -> frozenset[str]:
    """Tracked files and new files git does not ignore: what a commit of this tree ships."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is on disk
        return frozenset(str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file())
    return frozenset(line for line in out.splitlines() if (REPO / line).exists())


@functools.lru_cache(maxsize=None)
def repo_paths() -> frozenset[str]:
    """Every shipped file and every folder above one."""
    paths = set(repo_files())
    for file in repo_files():
        parts = file.split("/")
        paths.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(paths)


@functools.lru_cache(maxsize=None)
def top_level_names() -> tuple[str, ...]:
    names = {p.split("/")[0] for p in repo_files()} | {"data", ".venv"}
    return tuple(sorted(names - {"README.md", ".gitignore"}, key=len, reverse=True))


@functools.lru_cache(maxsize=None)
def run_names() -> dict[str, dict]:
    """Run folder name (`name:`) -> the options file's data, for every shipped options file."""
    runs = {}
    for path in sorted((REPO / "options").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        runs[data["name"]] = data
    return runs


@functools.lru_cache(maxsize=None)
def result_scales() -> frozenset[str]:
    scales = set()
    for path in (REPO / "experiments" / "ablations").glob("*.yml"):
        for section in yaml.safe_load(path.read_text(encoding="utf-8")).get("sections", []):
            scales.update(section.get("scales", {}))
    return frozenset(scales)


# -- finding paths ----------------------------------------------------------------------------------

def path_pattern() -> re.Pattern:
    tops = "|".join(re.escape(t) for t in top_level_names())
    return re.compile(rf"(?<![\w./\-~])((?:{tops})(?:/[^\s`'\"()\[\],;|&=]*|(?![\w\-])))")


def expand_braces(token: str) -> list[str]:
    match = BRACES.search(token)
    if not match:
        return [token]
    return [v for choice in match.group(1).split(",")
            for v in expand_braces(token[:match.start()] + choice + token[match.end():])]


def repo_paths_in(text: str) -> set[str]:
    found = set()
    for chunk in re.split(r"[\s`'\"]+", text):
        for token in expand_braces(chunk):
            if PLACEHOLDER.search(token):
                continue
            for match in path_pattern().finditer(token):
                path = match.group(1).rstrip(".:,;)!?")
                if path.split("/")[0] in top_level_names():
                    found.add(path)
    return found


def data_problem(path: str) -> str | None:
    if path in ("data", "data/pretrained"):
        return None
    for made, writers in DATA_MADE.items():
        if path == made or path.startswith(made + ".") or path.startswith(made + "/"):
            rest = path[len(made):].lstrip("/.").split("/")[0]
            if rest and not path.startswith(made + ".") and not any(
                    rest in (REPO / w).read_text(encoding="utf-8") for w in writers):
                return f"no writer of {made} ({', '.join(writers)}) makes '{rest}'"
            return None
    if any(path == d or path.startswith(d + "/") for d in DATA_DOWNLOADED):
        return None
    return "a data/ path that no shipped command makes and docs/data.md does not lay out (DATA_MADE, DATA_DOWNLOADED)"


def run_folder_problem(path: str) -> str | None:
    parts = path.split("/")
    if parts[1] == "runs":
        return None
    options = run_names().get(parts[1])
    if options is None:
        return f"'{parts[1]}' is not the name: of any options file, so no run writes experiments/{parts[1]}/"
    number = re.fullmatch(r"(?:models/net_g_(\w+)\.pth|training_states/(\w+)\.state)", "/".join(parts[2:]))
    if number:
        value = number.group(1) or number.group(2)
        total = options["train"]["total_iter"]
        freq = options.get("logger", {}).get("save_checkpoint_freq", 5000)
        if not value.isdigit() or not (int(value) == total or (int(value) % freq == 0 and int(value) < total)):
            return f"the run of options '{parts[1]}' writes no checkpoint '{value}' (total_iter {total}, every {freq})"
    return None


def path_problem(path: str) -> str | None:
    """Why `path` (repository-relative) is not one a fresh clone has or a shipped command makes."""
    path = path.rstrip("/")
    parts = path.split("/")
    if path in EXTERNAL:
        return None
    if parts[0] == ".venv":
        return None if len(parts) == 1 or parts[1] in ("bin", "basicsr_ref") else "not a path make creates in .venv"
    if parts[0] == "data":
        return data_problem(path)
    if path in repo_paths():
        return None
    attribute = re.fullmatch(r"(.+)\.\w+", path)  # `vsr_accel/schedule/curriculum.build_schedule`
    if attribute and f"{attribute.group(1)}.py" in repo_paths():
        return None
    if parts[0] == "experiments" and len(parts) > 1 and f"experiments/{parts[1]}" not in repo_paths():
        return run_folder_problem(path)
    if len(parts) == 4 and parts[:2] == ["experiments", "results"] and parts[3] == "README.md":
        return None if parts[2] in result_scales() else f"no built-in table has a scale '{parts[2]}'"
    for output, writer in GENERATED.items():
        if path == output or path.startswith(output + "/"):
            written = output in (REPO / writer).read_text(encoding="utf-8")
            return None if written else f"{writer} does not write {output}"
    return "does not exist in the repository"


def module_problem(name: str) -> str | None:
    """`vsr_accel.train.health` (a module), `vsr_accel.core.errors.run_guarded` (a name in one, or a
    method of a class in one), `vsr_accel.schedule.lr.SCHEDULERS` (a name a package exports)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = "/".join(parts[:i])
        rest = parts[i:]
        if f"{base}.py" in repo_paths():
            source = (REPO / f"{base}.py").read_text(encoding="utf-8")
            ok = len(rest) <= 2 and (not rest or re.search(rf"\b{re.escape(rest[0])}\b", source))
            return None if ok else f"{base}.py has no '{'.'.join(rest)}'"
        if f"{base}/__init__.py" in repo_paths():
            if not rest:
                return None
            source = (REPO / f"{base}/__init__.py").read_text(encoding="utf-8")
            return None if len(rest) <= 2 and re.search(rf"\b{re.escape(rest[0])}\b", source) else \
                f"no module {base}/{rest[0]}.py, and {base}/__init__.py has no '{rest[0]}'"
    return "no such module"


# -- the texts --------------------------------------------------------------------------------------

def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def code_texts(text: str) -> list[str]:
    """Fenced blocks and inline code spans (outside the fences)."""
    blocks = FENCE.findall(text)
    return [*blocks, *INLINE.findall(FENCE.sub("", text))]


def commands(text: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, split at && ; | (comments kept apart)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        out.extend(part.strip() for part in re.split(r"&&|;|\|", line) if part.strip())
    return out


@functools.lru_cache(maxsize=None)
def entry_files() -> tuple[str, ...]:
    files = ["train.py", "infer.py"]
    files += sorted(f for f in repo_files() if re.fullmatch(r"scripts/\w+\.py", f))
    files += sorted(f for f in repo_files() if re.fullmatch(r"benchmarks/(bench_\w+|run_all)\.py", f))
    return tuple(files)


HELP_CHILD = r"""
import contextlib, io, json, runpy, sys
repo = sys.argv[1]
sys.path.insert(0, repo)
result = {}
for target in sys.argv[2:]:
    buffer = io.StringIO()
    sys.argv = [target, "--help"]
    code = None
    try:
        with contextlib.redirect_stdout(buffer):
            if target.endswith(".py"):
                runpy.run_path(f"{repo}/{target}", run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    result[target] = {"code": code, "text": buffer.getvalue()}
sys.stdout.write(json.dumps(result))
"""


@functools.lru_cache(maxsize=None)
def help_texts() -> dict[str, str]:
    """`--help` of every entry point, from one child process (imports torch once), unwrapped."""
    targets = [*entry_files(), *ENTRY_MODULES]
    env = {**os.environ, "COLUMNS": "1000", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", HELP_CHILD, str(REPO), *targets], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    bad = {t: r["code"] for t, r in result.items() if r["code"] not in (0, None) or "usage:" not in r["text"]}
    assert not bad, f"--help failed: {bad}"
    return {t: r["text"] for t, r in result.items()}


def entry_of(tokens: list[str]) -> tuple[str, int] | None:
    for i, token in enumerate(tokens):
        if token in entry_files() or (token.endswith(".sh") and token in repo_files()):
            return token, i
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1] in ENTRY_MODULES:
            return tokens[i + 1], i + 1
    return None


def flag_problems(command: str) -> list[str]:
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    if tokens[:1] == ["make"]:
        makefile = (REPO / "Makefile").read_text(encoding="utf-8")
        return [f"make {t}: no such target" for t in tokens[1:]
                if not t.startswith("-") and "=" not in t and not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    found = entry_of(tokens)
    if found is None:
        return []
    entry, index = found
    flags = {t.strip("`").split("=", 1)[0].rstrip(").,;:") for t in tokens[index + 1:]
             if re.match(r"--?[A-Za-z]", t) and not PLACEHOLDER.search(t)}
    text = (REPO / entry).read_text(encoding="utf-8") if entry.endswith(".sh") else help_texts()[entry]
    pending = PENDING_FLAGS.get(entry, set())
    return [f"{entry} has no flag {flag}" for flag in sorted(flags)
            if flag not in pending and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", "", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


# -- tests ------------------------------------------------------------------------------------------

def test_the_readme_is_a_first_read():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}: depth goes to docs/)"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_in_the_docs_exists(doc):
    text = doc.read_text(encoding="utf-8")
    paths = set().union(*(repo_paths_in(t) for t in code_texts(text)))
    problems = {p: path_problem(p) for p in sorted(paths)}
    modules = {m for t in code_texts(text) for m in MODULE.findall(t)}
    problems.update({m: module_problem(m.rstrip(".")) for m in sorted(modules)})
    assert not {p: why for p, why in problems.items() if why}


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_link_and_anchor_in_the_docs_resolves(doc):
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        rel = str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)
        why = path_problem(rel) if file else None
        if why:
            broken.append(f"{target}: {why}")
        elif anchor and resolved.suffix == ".md" and resolved.exists() and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading '#{anchor}' in {rel}")
    assert not broken


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_command_in_the_docs_passes_flags_its_program_takes(doc):
    problems = []
    for text in code_texts(doc.read_text(encoding="utf-8")):
        for command in commands(text):
            problems += [f"{command}: {p}" for p in flag_problems(command)]
    assert not problems


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_commands_in_the_docs_use_the_venv(doc):
    """`make demo` / `make test` build `.venv`; a bare `python` would be some other interpreter."""
    bare = [c for text in FENCE.findall(doc.read_text(encoding="utf-8")) for c in commands(text)
            if re.match(r"(nohup\s+)?python3?\s", c)]
    assert not bare


def test_every_path_and_flag_in_the_help_texts_is_real():
    problems = []
    for entry, text in help_texts().items():
        problems += [f"{entry} --help: {p}: {why}" for p in sorted(repo_paths_in(text)) if (why := path_problem(p))]
        problems += [f"{entry} --help: {m}: {why}" for m in sorted(set(MODULE.findall(text)))
                     if (why := module_problem(m.rstrip(".")))]
        problems += [f"{entry} --help: {line.strip()}: {why}" for line in text.splitlines()
                     if entry_of(line.split()) for why in flag_problems(line.split(" #", 1)[0])]
    assert not problems, "\n".join(problems)


def test_data_paths_have_a_maker_or_a_documented_layout():
    for made, writers in DATA_MADE.items():
        assert made in (REPO / writers[0]).read_text(encoding="utf-8"), f"{writers[0]} does not name {made}"
    layout = DATA_DOC.read_text(encoding="utf-8")
    assert not [d for d in DATA_DOWNLOADED if d not in layout], "docs/data.md must lay out every download"


@pytest.mark.parametrize("path, ok", [
    ("options/demo_cpu.yml", True), ("options/demo_cpu_multigrid.yml", False),
    ("experiments/demo_cpu/models/net_g_300.pth", True), ("experiments/demo_cpu/models/net_g_latest.pth", False),
    ("experiments/demo_cpu/models/net_g_250.pth", True), ("experiments/demo_cpu/models/net_g_310.pth", False),
    ("experiments/nosuchrun/train.log", False), ("experiments/runs/cpu", True),
    ("data/demo/val_sharp/000", True), ("data/demo/nosuch", False), ("data/REDS/train_sharp", True),
    ("data/nosuch", False), ("data/pretrained/spynet_synthetic.pth.json", True),
    ("experiments/results/proxy/README.md", True), ("experiments/results/nosuch/README.md", False),
    (".venv/bin/python", True), ("datasets/REDS", False),
])
def test_the_path_rule(path, ok):
    assert (path_problem(path) is None) == ok, path_problem(path)


def test_path_tokens():
    text = "run `.venv/bin/python train.py -opt options/iconvsr_{reds,vimeo}_baseline.yml --set a=data/demo`; " \
           "not experiments/<name>/ nor clip.mp4, nor /abs/options/x.yml, but scripts/evaluate.py."
    assert repo_paths_in(text) == {".venv/bin/python", "train.py", "options/iconvsr_reds_baseline.yml",
                                   "options/iconvsr_vimeo_baseline.yml", "data/demo", "scripts/evaluate.py"}


@pytest.mark.parametrize("command, problems", [
    (".venv/bin/python scripts/regroup_reds_val.py --reds-root data/REDS", 0),
    (".venv/bin/python scripts/regroup_reds_val.py --root data/REDS", 1),
    (".venv/bin/python -m torch.distributed.run --nproc_per_node=2 train.py -opt x.yml --auto_resume --nope", 1),
    (".venv/bin/python -m experiments.run all --scale proxy --report-only", 0),
    ("bash benchmarks/gpu_check.sh --tiny", 0), ("bash benchmarks/gpu_check.sh --huge", 1),
    ("make demo", 0), ("make nosuch", 1),
])
def test_the_flag_rule(command, problems):
    assert len(flag_problems(command)) == problems, flag_problems(command)


def test_anchors_are_githubs():
    assert slug("Why no basicsr or mmcv at run time") == "why-no-basicsr-or-mmcv-at-run-time"
    assert slug("The notation: `S&T`") == "the-notation-st"
    assert slug("Data, under `data/`") == "data-under-data"


@pytest.mark.parametrize("name, ok", [
    ("vsr_accel.train.health", True), ("vsr_accel.health", False), ("vsr_accel.core.errors.run_guarded", True),
    ("vsr_accel.core.errors.nosuch", False), ("vsr_accel.train.prefetch.DevicePrefetcher", True),
    ("vsr_accel.schedule.lr", True),
])
def test_the_module_rule(name, ok):
    assert (module_problem(name) is None) == ok, module_problem(name)
