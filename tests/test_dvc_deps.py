"""dvc.yaml declares exactly what each stage runs and reads, so DVC re-runs a stage when, and only when, it may change.

* code: the repository files a stage's ``python -m stages.<name>`` executes, found by following its imports
  (``import``/``from``, relative ones, imports inside functions, ``importlib.import_module("stages...")`` and
  other ``"stages.x.y"`` strings such as train's Axolotl plugin), plus files it opens beside its own source
  (``Path(__file__).with_name(...)``: report's REPORT.md.j2). Declared code deps (directories expanded) must
  equal that set: a missing one lets an edit go unnoticed, an extra one re-runs the stage for nothing.
  Docstring-only ``__init__.py`` files are left out on both sides (they run no code).
* params: machine-dependent keys are declared for the active profile only (``profiles.${profile}.<section>``),
  and every such key exists in every profile, so ``dvc exp run -S profile=<name>`` resolves.
* files named in params (axolotl configs, chat templates...) that a stage reads are covered by a dep.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CMD_MODULE = re.compile(r"python -m ([\w.]+)")
MODULE_STRING = re.compile(r"^stages(\.\w+)+$")
TEMPLATE = re.compile(r"\$\{([\w.]+)\}")

# Params naming a file the stage does NOT read (only quotes or passes on): no dep needed.
NOT_READ = {
    "synthesize": {"data.pdf"},  # only the file name goes into the dataset card
    "report": {"*"},  # quotes the setup; reads the adapter's recorded axolotl.yaml, not the configs named in params
    "evaluate@baseline-template": {"evaluate.natural_questions"},  # template items never open the natural set
    "evaluate@baseline_fewshot-template": {"evaluate.natural_questions"},
    "evaluate@finetuned-template": {"evaluate.natural_questions"},
}


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def files_under(path: Path) -> set[Path]:
    if path.is_file():
        return {path}
    return {p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def references(path: Path) -> tuple[set[str], set[Path]]:
    """(module names a file imports or names in a string, files it opens beside itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = rel(path)[: -len(".py")].replace("/", ".")
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"  # relative imports resolve against the package itself
    names: set[str] = set()
    files: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            names.add(node.value)  # importlib.import_module("stages.x") or a "stages.x.Class" plugin path
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "with_name"
            and "__file__" in ast.unparse(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            files |= files_under(path.with_name(node.args[0].value))
    return names, files


def executed_files(entry: str) -> set[str]:
    """Repository files that `python -m <entry>` may execute or open, transitively."""
    todo = [entry]
    if (REPO.joinpath(*entry.split(".")) / "__main__.py").is_file():
        todo.append(f"{entry}.__main__")  # -m on a package runs its __init__ then __main__
    seen_modules: set[str] = set()
    found: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen_modules:
            continue
        seen_modules.add(name)
        parts = name.split(".")
        # Importing a.b.c runs a/__init__, a/b/__init__ first; "stages.x.Class" resolves to module stages.x.
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]))
            if path is None or path in found:
                continue
            found.add(path)
            names, files = references(path)
            todo += sorted(n for n in names if n.split(".")[0] == "stages")
            for f in files:
                found.add(f)
                if f.suffix == ".py":
                    todo.append(rel(f)[: -len(".py")].replace("/", "."))
    return {rel(p) for p in found if not (p.name == "__init__.py" and docstring_only(p))}


def params_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


def substitute(value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return TEMPLATE.sub(lambda m: str(lookup(scope, m.group(1))), value)
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if isinstance(value, dict):
        return {substitute(k, scope): substitute(v, scope) for k, v in value.items()}
    return value


def stages(profile: str | None = None) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages, foreach expanded and ${...} resolved against params.yaml (profile overridable)."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    params = params_yaml()
    if profile is not None:
        params["profile"] = profile
    out = {}
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                out[f"{name}@{key}"] = substitute(stage["do"], {**params, "item": item})
        else:
            out[name] = substitute(stage, params)
    return out


def param_keys(stage: dict[str, Any]) -> list[str]:
    keys = []
    for entry in stage.get("params", []):
        keys += [entry] if isinstance(entry, str) else [k for v in entry.values() for k in v]
    return keys


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_equal_the_files_the_stage_runs(name: str) -> None:
    stage = STAGES[name]
    entries = CMD_MODULE.findall(stage["cmd"])
    assert entries, f"{name}: no `python -m` in its cmd"
    expected = set().union(*(executed_files(e) for e in entries))
    declared: set[str] = set()
    for dep in stage["deps"]:
        if dep.split("/")[0] == "stages":
            assert (REPO / dep).exists(), f"{name}: dep {dep} does not exist"
            declared |= {rel(p) for p in files_under(REPO / dep)}
    declared = {f for f in declared if not (f.endswith("__init__.py") and docstring_only(REPO / f))}
    assert sorted(expected - declared) == [], f"{name}: code it runs but does not list as a dep"
    assert sorted(declared - expected) == [], f"{name}: code deps it never runs"


def test_the_analysis_sees_lazy_string_and_file_references() -> None:
    """The cases a plain top-level import scan misses are found (else the equality above would be hollow)."""
    assert "stages/common/natural.py" in executed_files("stages.evaluate")  # importlib.import_module(...)
    assert "stages/train_plugin.py" in executed_files("stages.train")  # Axolotl plugin named as a string
    assert "stages/report/REPORT.md.j2" in executed_files("stages.report")  # Path(__file__).with_name
    assert "stages/common/metrics.py" in executed_files("stages.synthesize")  # import inside a function
    truth = executed_files("stages.parse.truth")
    assert {"stages/parse/cer.py", "stages/parse/page.py", "stages/parse/ocr.py"} <= truth  # relative, transitive
    assert "stages/parse/truth.py" not in executed_files("stages.parse")


def test_machine_params_are_declared_for_the_active_profile_only() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    templated = 0
    for name, stage in dvc.items():
        for key in param_keys(stage.get("do", stage)):
            if key.startswith("profiles."):
                assert key.startswith("profiles.${profile}."), f"{name}: {key} (editing another profile re-runs it)"
                templated += 1
    assert templated >= 10


@pytest.mark.parametrize("profile", sorted(params_yaml()["profiles"]))
def test_every_declared_param_exists_whatever_the_profile(profile: str) -> None:
    """`dvc exp run -S profile=<name>` fails on a param key missing from params.yaml."""
    params = {**params_yaml(), "profile": profile}
    for name, stage in stages(profile).items():
        for key in param_keys(stage):
            try:
                lookup(params, key)
            except (KeyError, TypeError):
                pytest.fail(f"{name}: param {key} is not in params.yaml with profile={profile}")


def _paths_in(value: Any, key: str) -> list[tuple[str, str]]:
    """(dotted key, path) of every string under `key` that names a file of the repository."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths_in(v, f"{key}.{k}")]
    if isinstance(value, list):
        return [p for v in value for p in _paths_in(v, key)]
    return [(key, value)] if isinstance(value, str) and "/" in value and (REPO / value).is_file() else []


@pytest.mark.parametrize("profile", sorted(params_yaml()["profiles"]))
def test_files_named_in_a_stage_params_are_deps(profile: str) -> None:
    params = {**params_yaml(), "profile": profile}
    for name, stage in stages(profile).items():
        skip = NOT_READ.get(name, set())
        if "*" in skip:
            continue
        deps = [d.rstrip("/") for d in stage.get("deps", [])]
        for declared in param_keys(stage):
            for key, path in _paths_in(lookup(params, declared), declared):
                if key.replace(f"profiles.{profile}.", "") in skip:
                    continue
                assert any(path == d or path.startswith(d + "/") for d in deps), (
                    f"{name}: reads {path} (params {key}) without a dep on it"
                )


def test_sft_and_evaluate_depend_on_the_retrieval_keys_they_read_only() -> None:
    """Ranking knobs (bm25, fusion, rerank, passage template, decimals) reach sft and evaluate through
    data/index/meta.json (Retriever.load), so only the query-time keys are params; eval_k is index-only."""
    for name, stage in STAGES.items():
        if name == "sft" or name.startswith("evaluate@"):
            retrieval = sorted(k for k in param_keys(stage) if k.split(".")[0] == "retrieval")
            assert retrieval == ["retrieval.method", "retrieval.top_k"], name
            assert "data/index" in stage["deps"], name


@pytest.mark.parametrize("profile", sorted(params_yaml()["profiles"]))
def test_dvc_itself_resolves_the_active_profile_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    """DVC (not only the YAML above) expands profiles.${profile}.* from params.yaml, as `-S profile=...` sets it."""
    pytest.importorskip("dvc")
    from dvc.repo import Repo

    raw = {**params_yaml(), "profile": profile}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        resolved = {s.name: s for s in repo.index.stages}
    params = {
        name: {p for dep in stage.deps if hasattr(dep, "params") for p in dep.params}
        for name, stage in resolved.items()
    }
    assert {f"profiles.{profile}.train", f"profiles.{profile}.machine"} <= params["train"]
    assert f"profiles.{profile}.evaluate" in params["evaluate@finetuned-natural"]
    declared = {p for ps in params.values() for p in ps if p.startswith("profiles.")}
    assert {p.split(".")[1] for p in declared} == {profile}
    assert {p for p in params["sft"] if p.startswith("retrieval")} == {"retrieval.top_k", "retrieval.method"}
