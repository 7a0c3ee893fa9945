"""Static checks of docker/Dockerfile, docker/Dockerfile.serving and .dockerignore.

No Docker engine is needed: the Dockerfiles are parsed into instructions and stages.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILES = ("docker/Dockerfile", "docker/Dockerfile.serving")
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "clang", "python3-dev", "libc6-dev")


@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def parse_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) with ${ARG} in FROM lines resolved."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
        elif not stages:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            key, _, default = instruction.args.partition("=")
            global_args[key] = default.strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def env_of(stage: Stage) -> dict[str, str]:
    env = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request) -> tuple[str, list[Stage]]:
    text = (REPO / request.param).read_text()
    _, stages = parse_stages(text)
    return request.param, stages


def test_the_parser_joins_continuations_and_resolves_arguments():
    text = (
        "ARG BASE=python:3.11.9-slim-bookworm\n"
        "FROM ${BASE} AS builder\n"
        "# a comment\n"
        "RUN a \\\n"
        "  # inner comment\n"
        "  && b\n"
        "FROM $BASE\n"
        "USER 10001\n"
    )
    global_args, stages = parse_stages(text)
    assert global_args == {"BASE": "python:3.11.9-slim-bookworm"}
    assert [(s.base, s.name) for s in stages] == [
        ("python:3.11.9-slim-bookworm", "builder"), ("python:3.11.9-slim-bookworm", None)
    ]
    assert [" ".join(run.split()) for run in stages[0].all("RUN")] == ["a && b"]
    assert stages[1].all("USER") == ["10001"]


def test_base_image_is_pinned_to_a_full_python_version(dockerfile):
    path, stages = dockerfile
    stage_names = {s.name for s in stages if s.name}
    external = [s.base for s in stages if s.base not in stage_names]
    assert external, path
    for base in external:
        assert PINNED_PYTHON.match(base), f"{path}: base image {base!r} is not pinned to 3.11.x-slim"
    assert len(set(external)) == 1, f"{path}: stages use different bases {external}"


def test_builds_in_a_builder_stage_and_ships_only_the_venv(dockerfile):
    path, stages = dockerfile
    assert len(stages) >= 2, f"{path} must be multi-stage"
    builder, final = stages[0], stages[-1]
    assert builder.name, f"{path}: the builder stage needs a name"
    copies_from_builder = [c for c in final.all("COPY") if c.startswith(f"--from={builder.name} ")]
    assert copies_from_builder and all("/opt/venv" in c for c in copies_from_builder), path
    assert env_of(final)["PATH"].startswith("/opt/venv/bin:"), path


def test_dependencies_come_from_the_lock_without_resolution(dockerfile):
    path, stages = dockerfile
    builder = stages[0]
    copies = " ".join(builder.all("COPY"))
    image = "serving" if path.endswith("serving") else "component"
    for needed in (f"docker/{image}.lock", "docker/build-venv.sh"):
        assert needed in copies, f"{path}: the builder does not copy {needed}"
    # Only the image's own pins: an edit to the lock that leaves them alone keeps the layer cached.
    assert "requirements.lock" not in copies, f"{path}: copying the whole lock rebuilds the dependencies on any edit"
    assert f"/src/build-venv.sh deps {image}" in builder.all("RUN")
    assert "/src/build-venv.sh project" in builder.all("RUN")
    script = (REPO / "docker/build-venv.sh").read_text()
    pip_installs = [line.strip() for line in script.splitlines() if "pip install" in line and not line.strip().startswith("#")]
    assert pip_installs and all("--no-deps" in line for line in pip_installs), "pip may resolve on its own"
    assert "PIP_NO_CACHE_DIR=1" in script, "pip cache left in a layer"
    assert '-r "/src/$image.lock"' in script


def test_final_stage_runs_as_a_fixed_non_root_uid(dockerfile):
    path, stages = dockerfile
    users = stages[-1].all("USER")
    assert users, f"{path}: the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{path}: USER {users[-1]!r} must be numeric (Kubernetes runAsNonRoot checks it)"
    assert int(uid) >= 1000
    assert uid == "10001", f"{path}: k8s/ manifests run as 10001, the image as {uid}"


def test_final_stage_installs_no_build_tools(dockerfile):
    path, stages = dockerfile
    for run in stages[-1].all("RUN"):
        assert "pip install" not in run, f"{path}: installs Python packages in the final stage"
        if "apt-get install" in run or "apt install" in run:
            words = set(run.replace("\\", " ").split())
            assert not words & set(BUILD_TOOLS), f"{path}: build tools in the final stage: {run}"


def test_writable_paths_are_volumes_for_a_read_only_root(dockerfile):
    path, stages = dockerfile
    final = stages[-1]
    env = env_of(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    volumes = {v for args in final.all("VOLUME") for v in re.findall(r'"([^"]+)"', args) or args.split()}
    for variable in ("HOME", "FLYWHEEL_HOME", "TMPDIR"):
        assert env[variable] in volumes, f"{path}: ${variable}={env[variable]} is not a VOLUME"
    assert env["HOME"] == env["FLYWHEEL_HOME"] == "/var/lib/flywheel"


def test_component_image_leaves_the_command_to_kubeflow():
    _, stages = parse_stages((REPO / "docker/Dockerfile").read_text())
    final = stages[-1]
    # KFP's compiled IR sets command: [python, -m, flywheel.kubeflow.entrypoint]; an ENTRYPOINT would
    # be prepended to nothing useful, and PATH must make `python` the venv's python.
    assert not final.all("ENTRYPOINT")
    assert env_of(final)["PATH"].split(":")[0] == "/opt/venv/bin"


def test_serving_image_exposes_8501_with_a_healthcheck_and_serves():
    _, stages = parse_stages((REPO / "docker/Dockerfile.serving").read_text())
    final = stages[-1]
    assert final.all("EXPOSE") == ["8501"]
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "urllib" in healthcheck and ":8501/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    (cmd,) = final.all("CMD")
    import json

    argv = json.loads(cmd)
    assert argv[:2] == ["flywheel", "serve"]
    assert argv[argv.index("--registry") + 1] == "/models"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "8501"


# ------------------------------------------------------------------ .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern (Go filepath.Match plus '**') as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def is_excluded(path: str, rules: list[str]) -> bool:
    """Whether `docker build` leaves ``path`` out of the context (the last matching rule wins).

    A pattern matches a path or any of its parent directories, as in moby/patternmatcher.
    """
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        regex = _pattern_regex(rule.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


@pytest.fixture
def ignore_rules() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_what_the_dockerfiles_copy(ignore_rules):
    for path in DOCKERFILES:
        _, stages = parse_stages((REPO / path).read_text())
        for stage in stages:
            for copy in stage.all("COPY"):
                if copy.startswith("--from="):
                    continue
                *sources, _destination = copy.split()
                for source in sources:
                    source_path = REPO / source
                    assert source_path.exists(), f"{path} copies {source}, which does not exist"
                    files = [source_path] if source_path.is_file() else [
                        f for f in source_path.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                        and f.suffix not in (".pyc", ".crt")
                    ]
                    assert files, f"{path} copies an empty {source}"
                    for file in files:
                        relative = file.relative_to(REPO).as_posix()
                        assert not is_excluded(relative, ignore_rules), f"{relative} is not in the context"


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", ".flywheel/metadata.sqlite", "tests/k8s/conftest.py",
     "flywheel/__pycache__/images.cpython-311.pyc", "benchmarks/out/run.json", "k8s/base/kustomization.yaml"],
)
def test_dockerignore_leaves_local_state_out(ignore_rules, path):
    assert is_excluded(path, ignore_rules)


def test_every_top_level_package_of_setup_py_is_copied():
    setup = (REPO / "setup.py").read_text()
    package_dirs = set(re.findall(r'"flywheel\.\w+":\s*"(\w+)"', setup)) | {"flywheel"}
    for path in DOCKERFILES:
        _, stages = parse_stages((REPO / path).read_text())
        copied = {c.split()[0] for c in stages[0].all("COPY")}
        assert package_dirs <= copied, f"{path} misses {package_dirs - copied}"
