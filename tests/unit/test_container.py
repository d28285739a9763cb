"""The container setup, checked without a Docker engine: Dockerfiles, docker-compose.yml, .dockerignore.

The checkers below read the files the way Docker and Compose do (instructions per build stage, COPY
sources against the build context and .dockerignore, compose services, volumes, healthchecks,
commands) and return a list of problems. Each runs on the real repo (no problems), and on a copy of the
relevant files with one thing broken (that problem found), so no check passes vacuously. The health
probe the images run, docker/healthcheck.py, is also run for real against real servers, plaintext and
TLS, and the compose profile "secure" is started for real (outside Docker) with certificates and tokens
from scripts/dev_certs.py.
"""

from __future__ import annotations

import importlib.util
import io
import ipaddress
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.config import parse_config
from tests.conftest import ServerFactory
from tests.e2e.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "docker-compose.yml"
SERVER_DOCKERFILE = "Dockerfile"
LOCUST_DOCKERFILE = "docker/locust.Dockerfile"
HEALTHCHECK_SCRIPT = "docker/healthcheck.py"
ENTRYPOINT_SCRIPT = "docker/locust-entrypoint.sh"
REQUIREMENT_SCRIPT = "docker/requirement.py"
DEV_CERTS_SCRIPT = "scripts/dev_certs.py"
SERVER_PORT = "50051"
# The compose services that run the server image: the load test's (plaintext, --insecure, on the compose
# network) and the one in the profile "secure" (TLS and tokens from a read-only ./secrets).
SERVER_SERVICE = "server"
SECURE_SERVICE = "server-secure"
SECURE_PROFILE = "secure"
SECRETS_SOURCE = "./secrets"
# What the build context must never send to the daemon (it could end up in a layer).
LOCAL_STATE = (
    ".venv",
    ".git",
    ".env",
    "data",
    "results",
    "secrets",
    "secrets/tokens.toml",
    "secrets/server.key",
    ".pytest_cache",
    "server/streamstats_server/__pycache__",
)
# Programs (and bash's pseudo-files) that only show a port is open, not that the server serves.
TCP_PROBES = ("nc", "netcat", "ncat", "curl", "wget", "telnet", "socat", "/dev/tcp", "/dev/udp")
# Files a COPY'd folder must not lose to .dockerignore (caches and the like may go).
SOURCE_SUFFIXES = {".py", ".pyi", ".typed", ".toml", ".md", ".sh", ".json", ".proto"}


# -- reading Dockerfiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int


@dataclass
class Stage:
    base: str  # as written, e.g. ${PYTHON_IMAGE}
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    preamble: list[Instruction]  # before the first FROM: only ARGs are allowed there
    stages: list[Stage]

    def global_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        for instruction in self.preamble:
            if instruction.keyword == "ARG":
                name, _, default = instruction.args.partition("=")
                args[name.strip()] = default.strip().strip("\"'")
        return args


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction text): comments dropped, backslash continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(part for part in pending if part)


def parse_dockerfile(path: Path) -> Dockerfile:
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), line)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            base = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name, line))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return Dockerfile(path, preamble, stages)


def exec_form(args: str) -> list[str] | None:
    """The JSON-array (exec) form of CMD/ENTRYPOINT/RUN as a list, or None for the shell form."""
    if not args.lstrip().startswith("["):
        return None
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return None


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """Leading --flag=value options of an instruction, and the rest."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


@dataclass(frozen=True)
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None
    line: int


def copies(stage: Stage) -> list[Copy]:
    found = []
    for instruction in stage.all("COPY") + stage.all("ADD"):
        flags, rest = split_flags(instruction.args)
        words = exec_form(rest) or shlex.split(rest)
        found.append(Copy(words[:-1], words[-1], flags.get("from"), instruction.line))
    return found


def resolve_args(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), text)


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        env.update(env_pairs(instruction.args))
    return env


def image_path_to_repo(stage: Stage, image_path: str, context_dir: Path, workdir: str = "/") -> str | None:
    """The context path (e.g. docker/healthcheck.py) that a path in the stage's image was COPY'd from.

    Docker's rules: a folder's contents go into the destination; a file goes to the destination itself,
    or into it when it ends with "/" or there are several sources. The last COPY to a path wins.
    """
    target = posixpath.normpath(posixpath.join(workdir, image_path))
    for copy in reversed(copies(stage)):
        if copy.from_stage is not None:
            continue
        dest = posixpath.normpath(posixpath.join(workdir, copy.dest))
        for source in copy.sources:
            src = posixpath.normpath(source)
            is_dir = (context_dir / src).is_dir() or source.endswith("/")
            if is_dir and target.startswith(dest.rstrip("/") + "/"):
                return posixpath.normpath(posixpath.join(src, target[len(dest.rstrip("/")) + 1 :]))
            into = copy.dest.endswith("/") or len(copy.sources) > 1
            if not is_dir and target == (posixpath.join(dest, posixpath.basename(src)) if into else dest):
                return src
    return None


# -- .dockerignore ---------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore patterns: Go's filepath.Match plus ** for any number of folders."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_dockerignore(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception "!...", pattern) in file order."""
    path = context / ".dockerignore"
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if not path.exists():
        return rules
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether .dockerignore keeps this context path out: the last rule matching it or a parent wins."""
    parts = posixpath.normpath(relative).split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


# -- pyproject.toml --------------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def known_programs(root: Path) -> set[str]:
    """Console scripts the project declares, and those of the packages it depends on (as installed)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    programs = set(project.get("scripts", {}))
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    names = {_normalize(m.group(0)) for r in requirements if (m := re.match(r"[A-Za-z0-9][\w.-]*", r))}
    for entry_point in metadata.entry_points(group="console_scripts"):
        dist = entry_point.dist
        if dist is not None and _normalize(dist.metadata["Name"]) in names:
            programs.add(entry_point.name)
    return programs


# -- the Dockerfile checker --------------------------------------------------------------------------


def _check_python(root: Path, relative: str, what: str) -> list[str]:
    path = root / relative
    if not path.is_file():
        return [f"{what}: {relative} does not exist"]
    try:
        compile(path.read_text(), str(path), "exec")
    except SyntaxError as exc:
        return [f"{what}: {relative} is not valid Python: {exc}"]
    return []


def _check_image_paths(root: Path, context: str, stage: Stage, argv: list[str], what: str) -> list[str]:
    """Every in-image path in a command that comes from the repo must exist (and compile if Python)."""
    problems = []
    workdir = "/"
    for instruction in stage.all("WORKDIR"):
        workdir = posixpath.join(workdir, instruction.args)
    for word in argv:
        if not word.startswith("/") or not word.endswith((".py", ".sh")):
            continue
        source = image_path_to_repo(stage, word, root / context, workdir)
        if source is None:
            problems.append(f"{what}: {word} is not copied into the image")
            continue
        relative = posixpath.normpath(posixpath.join(context, source))
        if word.endswith(".py"):
            problems += _check_python(root, relative, what)
        elif not (root / relative).is_file():
            problems.append(f"{what}: {relative} does not exist")
    return problems


def _tcp_probe(words: list[str]) -> str | None:
    """The TCP probe a health check command uses, if any (its words, and a CMD-SHELL string's words)."""
    tokens = [token for word in words for token in re.split(r"[\s;&|()<>'\"`]+", word) if token]
    for token in tokens:
        for probe in TCP_PROBES:
            if posixpath.basename(token) == probe or (probe.startswith("/dev/") and probe in token):
                return probe
    return None


def check_dockerfile(root: Path, dockerfile: str, context: str = ".", *, server: bool = False) -> list[str]:
    """Problems of one Dockerfile; server=True adds the server image's own requirements."""
    path = root / dockerfile  # both relative to the repo root
    if not path.is_file():
        return [f"{dockerfile}: does not exist"]
    parsed = parse_dockerfile(path)
    name = dockerfile
    problems: list[str] = []
    for instruction in parsed.preamble:
        if instruction.keyword != "ARG":
            problems.append(f"{name}:{instruction.line}: {instruction.keyword} before the first FROM")
    if len(parsed.stages) < 2:
        return [*problems, f"{name}: not multi-stage (a builder stage and a runtime stage, each a FROM)"]
    args = parsed.global_args()
    stage_names: list[str] = []
    for index, stage in enumerate(parsed.stages):
        base = resolve_args(stage.base, args)
        if base not in stage_names and not re.fullmatch(
            r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:\w+)?", base
        ):
            problems.append(f"{name}:{stage.line}: stage {index} is FROM {base!r}, not a slim Python 3.11")
        for copy in copies(stage):
            if copy.from_stage is not None and copy.from_stage not in stage_names:
                problems.append(
                    f"{name}:{copy.line}: COPY --from={copy.from_stage}: no earlier stage of that name"
                )
        for keyword in ("CMD", "ENTRYPOINT"):
            for instruction in stage.all(keyword):
                if exec_form(instruction.args) is None:
                    problems.append(
                        f"{name}:{instruction.line}: {keyword} is not in exec form (a JSON array)"
                    )
        stage_names.append(stage.name or str(index))
    final = parsed.stages[-1]
    if not any(c.from_stage is not None for c in copies(final)):
        problems.append(f"{name}: the final stage copies nothing from the builder stage")

    # What is copied from the build context exists there and is not excluded by .dockerignore.
    context_dir = root / context
    rules = read_dockerignore(context_dir)
    for local in LOCAL_STATE:
        if not is_ignored(local, rules):
            problems.append(f"{name}: the build context sends {local} (add it to {context}/.dockerignore)")
    for stage in parsed.stages:
        for copy in copies(stage):
            if copy.from_stage is not None:
                continue
            for source in copy.sources:
                matches = (
                    sorted(context_dir.glob(source.rstrip("/"))) if source.strip("./") else [context_dir]
                )
                if not matches:
                    problems.append(f"{name}:{copy.line}: COPY {source}: not in the build context")
                for match in matches:
                    relative = match.relative_to(context_dir).as_posix()
                    if is_ignored(relative, rules):
                        problems.append(f"{name}:{copy.line}: COPY {source}: excluded by .dockerignore")
                    elif match.is_dir():
                        lost = [
                            p.relative_to(context_dir).as_posix()
                            for p in match.rglob("*")
                            if p.is_file()
                            and p.suffix in SOURCE_SUFFIXES
                            and is_ignored(p.relative_to(context_dir).as_posix(), rules)
                        ]
                        if lost:
                            problems.append(
                                f"{name}:{copy.line}: COPY {source}: .dockerignore drops {lost[:3]}"
                            )

    # The final stage: not root, an exec-form command that is a real program.
    user = final.last("USER")
    if user is None:
        problems.append(f"{name}: the final stage has no USER (it would run as root)")
    elif user.args.split(":")[0].strip() in ("root", "0", ""):
        problems.append(f"{name}:{user.line}: the final stage runs as root")
    entrypoint = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    argv = exec_form(entrypoint.args) if entrypoint else None
    if entrypoint is None:
        argv = exec_form(cmd.args) if cmd else None
    if not argv:
        problems.append(f"{name}: the final stage has no exec-form CMD or ENTRYPOINT")
    else:
        program = argv[0]
        if program.startswith("/"):
            origin = image_path_to_repo(final, program, root / context)
            installed = posixpath.dirname(program) in ("/opt/venv/bin", "/usr/local/bin") and (
                posixpath.basename(program).startswith("python")
                or posixpath.basename(program) in known_programs(root)
            )
            if origin is None and not installed:
                problems.append(f"{name}: the entry point {program} is neither copied nor installed")
            elif origin is not None:
                script = root / context / origin
                if not script.is_file():
                    problems.append(
                        f"{name}: the entry point {program} comes from {origin}, which does not exist"
                    )
                elif script.suffix == ".sh" and not re.search(
                    r"^\s*exec\s", script.read_text(), re.MULTILINE
                ):
                    problems.append(f"{name}: the entry point {origin} does not exec the program (signals)")
        elif program not in known_programs(root) and not program.startswith("python"):
            problems.append(
                f"{name}: the entry point {program!r} is not a console script the project installs"
            )
        problems += _check_image_paths(root, context, final, argv, name)
        if cmd is not None and entrypoint is not None:
            problems += _check_image_paths(root, context, final, exec_form(cmd.args) or [], name)

    if server:
        problems += _check_server_stage(root, context, name, final)
    return problems


def server_refusal(environ: Mapping[str, str], argv: list[str] | None = None) -> str | None:
    """Why streamstats-server would refuse to start with this environment (and flags), or None.

    The server's own parse_config, so this follows its safety rule (no non-loopback address without
    TLS, tokens or --insecure) and its other checks (--tls-cert without --tls-key, bad values). Only
    flags and variables are checked: no file is read, nothing listens.
    """
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            parse_config(
                argv or [], environ={k: v for k, v in environ.items() if k.startswith("STREAMSTATS_")}
            )
    except SystemExit:
        lines = captured.getvalue().strip().splitlines()
        return lines[-1] if lines else "exited"
    return None


def _check_server_stage(root: Path, context: str, name: str, final: Stage) -> list[str]:
    problems = []
    env = stage_env(final)
    if env.get("STREAMSTATS_HOST") != "0.0.0.0":
        problems.append(f"{name}: ENV STREAMSTATS_HOST is {env.get('STREAMSTATS_HOST')!r}, not 0.0.0.0")
    # Safe by default: as built, the server refuses to listen on 0.0.0.0 until the deployment chooses
    # TLS, tokens or --insecure; an ENV that makes that choice would open every container of the image.
    refusal = server_refusal(env)
    if refusal is None:
        problems.append(
            f"{name}: the image serves openly by default: its ENV sets TLS, tokens or STREAMSTATS_INSECURE "
            "(leave that choice to each deployment)"
        )
    elif "refusing to listen" not in refusal:
        problems.append(f"{name}: the server cannot start with the image's ENV: {refusal}")
    data_dir = env.get("STREAMSTATS_DATA_DIR", "")
    volumes = set()
    for instruction in final.all("VOLUME"):
        volumes.update(exec_form(instruction.args) or instruction.args.split())
    if not data_dir or data_dir not in volumes:
        problems.append(f"{name}: ENV STREAMSTATS_DATA_DIR={data_dir!r} is not a VOLUME ({sorted(volumes)})")
    elif not any("chown" in run.args and data_dir in run.args for run in final.all("RUN")):
        problems.append(f"{name}: {data_dir} is not chowned to the server's user")
    port = env.get("STREAMSTATS_PORT", SERVER_PORT)
    exposed = {word.split("/")[0] for i in final.all("EXPOSE") for word in i.args.split()}
    if port not in exposed:
        problems.append(f"{name}: port {port} is not EXPOSEd ({sorted(exposed)})")
    healthcheck = final.last("HEALTHCHECK")
    if healthcheck is None or healthcheck.args.upper().startswith("NONE"):
        return [*problems, f"{name}: the server image has no HEALTHCHECK"]
    _, rest = split_flags(healthcheck.args)
    keyword, _, command = rest.partition(" ")
    argv = exec_form(command) if keyword.upper() == "CMD" else None
    if argv is None:
        return [*problems, f"{name}:{healthcheck.line}: HEALTHCHECK is not CMD in exec form"]
    probe = _tcp_probe(argv)
    if probe:
        problems.append(f"{name}:{healthcheck.line}: HEALTHCHECK is a TCP probe ({probe}), not a gRPC Check")
    if not any(word.endswith(".py") for word in argv):
        problems.append(f"{name}:{healthcheck.line}: HEALTHCHECK does not run the Python health probe")
    problems += _check_image_paths(root, context, final, argv, f"{name} HEALTHCHECK")
    return problems


# -- the compose checker -----------------------------------------------------------------------------


def interpolate(value: Any) -> str:
    """A compose value with ${VAR:-default} / ${VAR-default} / ${VAR} as when VAR is unset."""
    text = str(value)
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(interpolate(value))
    return [interpolate(v) for v in value]


def as_env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): interpolate(v) for k, v in value.items()}
    env = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        env[key] = interpolate(val)
    return env


def flag_value(argv: list[str], *flags: str) -> str | None:
    for i, word in enumerate(argv):
        for flag in flags:
            if word == flag and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return None


def _seconds(duration: str) -> float:
    """Locust's --run-time: 90, 30s, 2m, 1h30m."""
    if duration.isdigit():
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", duration.strip())
    if not duration.strip() or parts is None:
        return 0.0
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


@dataclass(frozen=True)
class Mount:
    source: str  # a named volume, or a host path (./secrets) for a bind mount
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))


def _volume_entries(service: dict[str, Any]) -> list[Mount]:
    """Each volume entry, short (source:target[:ro,...]) or long syntax."""
    mounts = []
    for entry in service.get("volumes", []) or []:
        if isinstance(entry, dict):
            mounts.append(
                Mount(
                    interpolate(entry.get("source", "")),
                    interpolate(entry.get("target", "")),
                    bool(entry.get("read_only", False)),
                )
            )
        else:
            source, _, rest = interpolate(entry).partition(":")
            target, _, mode = rest.partition(":")
            mounts.append(Mount(source, target, "ro" in mode.split(",")))
    return mounts


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    return [(m.source, m.target) for m in _volume_entries(service)]


def _published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port; "" for no address (all)."""
    ports = []
    for entry in service.get("ports", []) or []:
        if isinstance(entry, dict):
            ports.append(
                (
                    interpolate(entry.get("host_ip", "")),
                    interpolate(entry.get("published", "")),
                    interpolate(entry.get("target", "")),
                )
            )
            continue
        text = interpolate(entry).split("/")[0]  # no /tcp
        rest, _, target = text.rpartition(":")
        address, _, published = rest.rpartition(":")
        ports.append((address, published, target))
    return ports


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _under(path: str, folder: str) -> bool:
    return posixpath.normpath(path).startswith(folder.rstrip("/") + "/")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def dev_certs_files(root: Path) -> tuple[str, ...]:
    """The file names scripts/dev_certs.py writes (its FILES), read from the script."""
    path = root / DEV_CERTS_SCRIPT
    if not path.is_file():
        return ()
    return tuple(load_script(path).FILES)


def load_script(path: Path) -> Any:
    """A script (not a package module) imported from its file, under a name of its own."""
    name = "streamstats_script_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def _depends_condition(service: dict[str, Any], other: str) -> str | None:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return "service_started" if other in depends else None
    entry = depends.get(other)
    if entry is None:
        return None
    return str((entry or {}).get("condition", "service_started"))


def _dockerfile_of(service: dict[str, Any]) -> tuple[str, str] | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return build, "Dockerfile"
    return str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile"))


def _grants_group_write(run: str, path: str) -> bool:
    """Whether a RUN's commands include a chmod that makes ``path`` group-writable (775, g+w, ...)."""
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        if not words or words[0] != "chmod":
            continue
        args = [w for w in words[1:] if not w.startswith("-")]
        if len(args) < 2 or path not in args[1:]:
            continue
        mode = args[0]
        if re.fullmatch(r"[0-7]{3,4}", mode) and int(mode[-2]) & 2:
            return True
        for clause in mode.split(","):
            symbolic = re.fullmatch(r"([ugoa]*)[+=]([rwxXst]*)", clause)
            if (
                symbolic
                and "w" in symbolic.group(2)
                and (symbolic.group(1) in ("", "a") or "g" in symbolic.group(1))
            ):
                return True
    return False


def _check_server_service(
    root: Path,
    name: str,
    service: dict[str, Any],
    built: tuple[str, Stage] | None,
    declared_volumes: set[str],
) -> list[str]:
    """A compose service running the server image: data, health check, ports, user, configuration."""
    problems = []
    image_env = stage_env(built[1]) if built is not None else {}
    env = {**image_env, **as_env(service.get("environment"))}
    data_dir = env.get("STREAMSTATS_DATA_DIR", "/data")
    volumes = _volume_entries(service)
    named = [m for m in volumes if m.source and not m.is_bind]
    if not any(m.target == data_dir for m in named):
        problems.append(f"service {name}: no named volume mounted at its data dir {data_dir}")
    for mount in named:
        if mount.source not in declared_volumes:
            problems.append(
                f"service {name}: the named volume {mount.source!r} is not declared under volumes:"
            )

    healthcheck = service.get("healthcheck") or {}
    test = healthcheck.get("test")
    if not test or healthcheck.get("disable"):
        problems.append(f"service {name}: no healthcheck")
    else:
        words = as_argv(test)
        probe = _tcp_probe(words)
        if probe:
            problems.append(f"service {name}: the healthcheck is a TCP probe ({probe}), not a gRPC Check")
        if not any(word.endswith(".py") for word in words):
            problems.append(f"service {name}: the healthcheck does not run the Python health probe")
        if words and words[0] == "CMD" and built is not None:
            context_rel, stage = built
            problems += _check_image_paths(root, context_rel, stage, words[1:], f"service {name} healthcheck")

    # Published for the host's own clients only: on its loopback, to the port the server listens on.
    port = env.get("STREAMSTATS_PORT", SERVER_PORT)
    for address, published, target in _published_ports(service):
        if not _is_loopback(address):
            problems.append(
                f"service {name}: port {published}:{target} is published on {address or 'every address'}, "
                "not on the host's loopback (127.0.0.1)"
            )
        if target != port:
            problems.append(
                f"service {name}: publishes container port {target}, but the server listens on {port}"
            )

    # The server accepts this configuration (the image's ENV, then the service's environment).
    command = as_argv(service.get("command"))
    argv = command[1:] if command[:1] and posixpath.basename(command[0]) == "streamstats-server" else command
    refusal = server_refusal(env, argv)
    if refusal is not None:
        problems.append(f"service {name}: the server would refuse to start: {refusal}")

    # Not root; another uid may only write the image's /data through the image's group.
    user = interpolate(service.get("user", ""))
    if user:
        uid, _, gid = user.partition(":")
        if uid in ("0", "root") or gid in ("0", "root"):
            problems.append(f"service {name}: runs as root ({user})")
        image_user = built[1].last("USER") if built is not None else None
        if image_user is not None and uid != image_user.args.split(":")[0]:
            image_gid = image_user.args.partition(":")[2] or image_user.args
            writable = built is not None and any(
                _grants_group_write(run.args, data_dir) for run in built[1].all("RUN")
            )
            if gid != image_gid or not writable:
                problems.append(
                    f"service {name}: runs as {user}, which cannot write its data dir {data_dir} (it needs "
                    f"group {image_gid}, and the image must make {data_dir} group-writable)"
                )
    return problems


def _check_secure_service(root: Path, service: dict[str, Any]) -> list[str]:
    """server-secure: in its profile, TLS + tokens from a read-only ./secrets, a health check over TLS."""
    name = SECURE_SERVICE
    problems = []
    if SECURE_PROFILE not in (service.get("profiles") or []):
        problems.append(f"service {name}: not in the profile {SECURE_PROFILE!r} (plain `up` would start it)")
    secrets = [m for m in _volume_entries(service) if m.source.rstrip("/") == SECRETS_SOURCE]
    if not secrets:
        problems.append(f"service {name}: does not mount {SECRETS_SOURCE}")
        return problems
    folder = secrets[0].target
    if not secrets[0].read_only:
        problems.append(f"service {name}: mounts {SECRETS_SOURCE} at {folder} writable, not read-only (:ro)")
    written = dev_certs_files(root)

    def in_secrets(what: str, path: str | None) -> None:
        if not path:
            problems.append(f"service {name}: no {what}")
        elif not _under(path, folder):
            problems.append(f"service {name}: {what} {path} is not in the read-only {SECRETS_SOURCE} mount")
        elif posixpath.basename(path) not in written:
            problems.append(
                f"service {name}: {what} {path} is not a file {DEV_CERTS_SCRIPT} writes "
                f"({', '.join(written)})"
            )

    env = as_env(service.get("environment"))
    for key in ("STREAMSTATS_TLS_CERT", "STREAMSTATS_TLS_KEY", "STREAMSTATS_AUTH_TOKENS"):
        in_secrets(key, env.get(key))
    if env.get("STREAMSTATS_TLS_CLIENT_CA"):
        in_secrets("STREAMSTATS_TLS_CLIENT_CA", env["STREAMSTATS_TLS_CLIENT_CA"])
    if _truthy(env.get("STREAMSTATS_INSECURE")):
        problems.append(f"service {name}: sets STREAMSTATS_INSECURE")

    # The probe speaks TLS, trusting a CA from the mount; where mutual TLS can be switched on
    # (STREAMSTATS_TLS_CLIENT_CA is in the environment), it presents the client certificate too.
    words = as_argv((service.get("healthcheck") or {}).get("test"))
    in_secrets(
        "healthcheck --tls-ca", flag_value(words, "--tls-ca") or env.get("STREAMSTATS_HEALTHCHECK_TLS_CA")
    )
    if "STREAMSTATS_TLS_CLIENT_CA" in env:
        for flag in ("--tls-cert", "--tls-key"):
            value = flag_value(words, flag) or env.get(
                f"STREAMSTATS_HEALTHCHECK_{flag[2:].replace('-', '_').upper()}"
            )
            if not value:
                problems.append(f"service {name}: the healthcheck has no {flag}, which mutual TLS needs")
            else:
                in_secrets(f"healthcheck {flag}", value)
    return problems


def check_compose(root: Path, compose_file: str = COMPOSE_FILE) -> list[str]:
    """Problems of docker-compose.yml, including every Dockerfile its services build."""
    path = root / compose_file
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{compose_file}: does not parse: {exc}"]
    if not isinstance(config, dict) or not isinstance(config.get("services"), dict):
        return [f"{compose_file}: no services"]
    services: dict[str, Any] = config["services"]
    problems: list[str] = []
    for needed in (SERVER_SERVICE, SECURE_SERVICE, "master", "worker"):
        if not isinstance(services.get(needed), dict):
            problems.append(f"{compose_file}: no service {needed!r}")
    if problems:
        return problems
    base = path.parent
    declared_volumes = set((config.get("volumes") or {}).keys())

    # Every service's build: the context and its Dockerfile exist, and the Dockerfile passes its checks.
    server_stages: dict[str, tuple[str, Stage]] = {}
    for name, service in services.items():
        build = _dockerfile_of(service)
        if build is None:
            if "image" not in service:
                problems.append(f"service {name}: neither build nor image")
            continue
        context, dockerfile = build
        context_dir = base / context
        if not context_dir.is_dir():
            problems.append(f"service {name}: build context {context} does not exist")
            continue
        if not (context_dir / dockerfile).is_file():
            problems.append(f"service {name}: Dockerfile {context}/{dockerfile} does not exist")
            continue
        context_rel = posixpath.normpath(context_dir.resolve().relative_to(root.resolve()).as_posix())
        dockerfile_rel = posixpath.normpath(posixpath.join(context_rel, dockerfile))
        problems += [
            f"service {name}: {p}"
            for p in check_dockerfile(
                root, dockerfile_rel, context_rel, server=name in (SERVER_SERVICE, SECURE_SERVICE)
            )
        ]
        if name in (SERVER_SERVICE, SECURE_SERVICE):
            stages = parse_dockerfile(context_dir / dockerfile).stages
            if stages:
                server_stages[name] = (context_rel, stages[-1])
        for command in (service.get("command"), service.get("entrypoint")):
            argv = as_argv(command)
            if argv[:1] and posixpath.basename(argv[0]) in ("sh", "bash") and argv[1:2] == ["-c"]:
                problems.append(f"service {name}: its command runs under a shell (signals); use a list")
        if any(word == "--slave" or word.startswith("--slave") for word in as_argv(service.get("command"))):
            problems.append(f"service {name}: uses --slave (removed from locust); use --worker")

    # The two servers: each on its own data volume, a real gRPC health check, loopback ports, and a
    # configuration the server accepts; the default one explicitly --insecure, the secure one TLS + tokens.
    for name in (SERVER_SERVICE, SECURE_SERVICE):
        problems += _check_server_service(
            root, name, services[name], server_stages.get(name), declared_volumes
        )
    problems += _check_secure_service(root, services[SECURE_SERVICE])
    server, secure = services[SERVER_SERVICE], services[SECURE_SERVICE]
    if _dockerfile_of(secure) != _dockerfile_of(server) or secure.get("image") != server.get("image"):
        problems.append(
            f"service {SECURE_SERVICE}: does not build and run the same image as {SERVER_SERVICE}"
        )
    shared = {m.source for m in _volume_entries(server) if not m.is_bind} & {
        m.source for m in _volume_entries(secure) if not m.is_bind
    }
    if shared:
        problems.append(
            f"service {SECURE_SERVICE}: shares the volume(s) {sorted(shared)} with {SERVER_SERVICE} "
            "(two servers on one data dir corrupt it)"
        )
    clash = {p for _, p, _ in _published_ports(server)} & {p for _, p, _ in _published_ports(secure)}
    if clash:
        problems.append(
            f"service {SECURE_SERVICE}: publishes the same host port(s) {sorted(clash)} as server"
        )
    if not _truthy(as_env(server.get("environment")).get("STREAMSTATS_INSECURE")):
        problems.append(
            f"service {SERVER_SERVICE}: does not set STREAMSTATS_INSECURE explicitly (the load test speaks "
            "plaintext, and without TLS or tokens the image refuses to listen on 0.0.0.0 unless told so)"
        )
    for name in (SERVER_SERVICE, "master", "worker"):
        if services[name].get("profiles"):
            problems.append(f"service {name}: in profiles {services[name]['profiles']}, so `up` skips it")

    # master: headless, waits for a healthy server, bounded, reports into a mounted ./results.
    master = services["master"]
    argv = as_argv(master.get("command"))
    env = as_env(master.get("environment"))
    if "--master" not in argv and env.get("LOCUST_MODE_MASTER", "").lower() not in ("1", "true"):
        problems.append("service master: not started with --master")
    if "--headless" not in argv and env.get("LOCUST_HEADLESS", "").lower() not in ("1", "true"):
        problems.append("service master: not --headless")
    host = flag_value(argv, "--host", "-H") or env.get("LOCUST_HOST")
    if host != f"server:{SERVER_PORT}":
        problems.append(f"service master: tests host {host!r}, not server:{SERVER_PORT}")
    if _depends_condition(master, "server") != "service_healthy":
        problems.append("service master: does not depend on server with condition: service_healthy")
    users = flag_value(argv, "--users", "-u") or env.get("LOCUST_USERS", "")
    spawn_rate = flag_value(argv, "--spawn-rate", "-r") or env.get("LOCUST_SPAWN_RATE", "")
    run_time = flag_value(argv, "--run-time", "-t") or env.get("LOCUST_RUN_TIME", "")
    if not users.isdigit() or int(users) < 1:
        problems.append(f"service master: users not bounded ({users!r})")
    if not re.fullmatch(r"\d+(\.\d+)?", spawn_rate) or float(spawn_rate) <= 0:
        problems.append(f"service master: spawn rate not set ({spawn_rate!r})")
    if _seconds(run_time) <= 0:
        problems.append(f"service master: run time not bounded ({run_time!r})")
    results = [t for s, t in _mounts(master) if s.startswith(("./", "../", "/")) and t]
    reports = [
        value
        for value in (
            flag_value(argv, "--csv") or env.get("LOCUST_CSV"),
            flag_value(argv, "--html") or env.get("LOCUST_HTML"),
        )
        if value
    ]
    if len(reports) < 2:
        problems.append("service master: does not write both --csv and --html reports")
    for report in reports:
        if not any(report.startswith(t.rstrip("/") + "/") for t in results):
            problems.append(f"service master: report {report} is not in a folder mounted from the host")

    # worker: --worker pointed at the master, scalable.
    worker = services["worker"]
    argv = as_argv(worker.get("command"))
    env = as_env(worker.get("environment"))
    if "--worker" not in argv and env.get("LOCUST_MODE_WORKER", "").lower() not in ("1", "true"):
        problems.append("service worker: not started with --worker")
    master_host = flag_value(argv, "--master-host") or env.get("LOCUST_MASTER_NODE_HOST")
    if master_host != "master":
        problems.append(f"service worker: --master-host is {master_host!r}, not master")
    for key in ("container_name", "ports"):
        if worker.get(key):
            problems.append(f"service worker: has {key}, so it cannot be scaled")
    return problems


# -- the checks on the real repo ---------------------------------------------------------------------


def test_compose_file_and_the_dockerfiles_it_builds_pass_every_check() -> None:
    assert check_compose(ROOT) == []


def test_the_server_dockerfile_passes_every_check() -> None:
    assert check_dockerfile(ROOT, SERVER_DOCKERFILE, server=True) == []


def test_the_locust_dockerfile_passes_every_check() -> None:
    assert check_dockerfile(ROOT, LOCUST_DOCKERFILE) == []


def test_compose_builds_both_images_and_the_entry_points_are_real() -> None:
    config = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())
    builds = {name: _dockerfile_of(service) for name, service in config["services"].items()}
    assert builds["server"] == (".", SERVER_DOCKERFILE)
    assert builds["master"] == builds["worker"] == (".", LOCUST_DOCKERFILE)
    assert "streamstats-server" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    final = parse_dockerfile(ROOT / LOCUST_DOCKERFILE).stages[-1]
    instruction = final.last("ENTRYPOINT")
    assert instruction is not None
    entrypoint = exec_form(instruction.args)
    assert entrypoint is not None
    locustfile = flag_value(entrypoint, "-f", "--locustfile")
    assert locustfile is not None
    assert image_path_to_repo(final, locustfile, ROOT) == "loadtest/locustfile.py"
    assert (ROOT / "loadtest" / "locustfile.py").is_file()
    assert "locust" in known_programs(ROOT)


def test_the_healthcheck_script_is_valid_python_and_importable() -> None:
    assert _check_python(ROOT, HEALTHCHECK_SCRIPT, "probe") == []
    module = load_script(ROOT / HEALTHCHECK_SCRIPT)
    args = module.parse_args([], {"STREAMSTATS_PORT": "6000"})
    assert (args.host, args.port, args.service) == ("127.0.0.1", 6000, "")
    assert 0 < args.timeout <= 5


def test_the_locust_version_in_the_image_is_the_one_pyproject_pins() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / REQUIREMENT_SCRIPT), str(ROOT / "pyproject.toml"), "locust"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"locust==[\d.]+", done.stdout.strip()), done.stdout
    assert done.stdout.strip() == f"locust=={metadata.version('locust')}"
    assert "requirement.py pyproject.toml locust" in (ROOT / LOCUST_DOCKERFILE).read_text()


def test_the_locust_entrypoint_checks_the_results_folder_then_execs_locust(tmp_path: Path) -> None:
    script = ROOT / ENTRYPOINT_SCRIPT
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "locust"
    fake.write_text('#!/bin/sh\necho "locust $*"\n')
    fake.chmod(0o755)
    results = tmp_path / "results"
    results.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RESULTS_DIR": str(results)}
    done = subprocess.run(
        ["sh", str(script), "-f", "/app/loadtest/locustfile.py", "--worker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "locust -f /app/loadtest/locustfile.py --worker\n")
    assert list(results.iterdir()) == []  # its write test leaves nothing behind
    env["RESULTS_DIR"] = str(tmp_path / "no-such-folder")  # a worker: no results folder, nothing checked
    done = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert (done.returncode, done.stdout) == (0, "locust \n")
    if os.geteuid() != 0:  # root can write anywhere
        results.chmod(0o555)
        env["RESULTS_DIR"] = str(results)
        done = subprocess.run(
            ["sh", str(script)], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        assert done.returncode == 1 and "cannot write to" in done.stderr and done.stdout == ""


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    rules = read_dockerignore(ROOT)
    for path in (*LOCAL_STATE, "secrets/ca.pem", "secrets/client.key", "elsewhere/server.key", "x/ca.pem"):
        assert is_ignored(path, rules), path
    for path in ("pyproject.toml", "README.md", "server/streamstats_server/app.py", "loadtest/locustfile.py"):
        assert not is_ignored(path, rules), path


def test_the_dockerignore_matcher() -> None:
    rules = [
        (False, _pattern_regex("**/__pycache__")),
        (False, _pattern_regex("*.md")),
        (True, _pattern_regex("README.md")),
    ]
    assert is_ignored("a/b/__pycache__/x.pyc", rules)
    assert is_ignored("__pycache__", rules)
    assert is_ignored("NOTES.md", rules)
    assert not is_ignored("README.md", rules)
    assert not is_ignored("docs/NOTES.md", rules)  # * does not cross folders


def test_the_tcp_probe_finder() -> None:
    assert _tcp_probe(["CMD", "/opt/venv/bin/python", "/opt/streamstats/healthcheck.py", "--fsync"]) is None
    assert _tcp_probe(["CMD-SHELL", "nc -z localhost 50051 || exit 1"]) == "nc"
    assert _tcp_probe(["CMD", "/usr/bin/curl", "-f", "http://localhost:50051"]) == "curl"
    assert _tcp_probe(["CMD-SHELL", "exec 3<>/dev/tcp/127.0.0.1/50051"]) == "/dev/tcp"


def test_the_readme_documents_the_docker_setup() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "\n## Docker\n" in readme
    section = readme.split("\n## Docker\n", 1)[1].split("\n## ", 1)[0]
    needed_words = (
        "docker build",
        "--scale worker=",
        "results",
        "healthcheck.py",
        "STREAMSTATS_HOST",
        "STREAMSTATS_INSECURE=1",
        "--profile secure",
        "dev_certs.py",
    )
    for needed in needed_words:
        assert needed in section, needed


# -- every check can fail: the same checks on a copy with one thing broken ------------------------------


COPIED = (
    "pyproject.toml",
    "README.md",
    SERVER_DOCKERFILE,
    ".dockerignore",
    COMPOSE_FILE,
    "docker",
    "client",
    "server",
    "loadtest",
    DEV_CERTS_SCRIPT,
)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def test_the_copy_passes_like_the_repo(repo_copy: Path) -> None:
    assert check_compose(repo_copy) == []


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path.name} exactly once: update this mutation"
    path.write_text(text.replace(old, new))


# (file, text in it, replacement, a problem the checkers must then report)
MUTATIONS = [
    (COMPOSE_FILE, '"--worker"', '"--slave"', "not started with --worker"),
    (COMPOSE_FILE, '"--worker"', '"--worker", "--slave"', "uses --slave"),
    (COMPOSE_FILE, '["--worker", "--master-host", "master"]', '["--worker"]', "--master-host is None"),
    (
        COMPOSE_FILE,
        '["--worker", "--master-host", "master"]',
        '["sh", "-c", "exec locust --worker --master-host master"]',
        "runs under a shell",
    ),
    (COMPOSE_FILE, "condition: service_healthy", "condition: service_started", "condition: service_healthy"),
    (
        COMPOSE_FILE,
        "\nvolumes:\n  streamstats-data:\n",
        "\nvolumes:\n",
        "'streamstats-data' is not declared under volumes",
    ),
    (COMPOSE_FILE, "- streamstats-data:/data", "- ./data:/data", "no named volume mounted at its data dir"),
    (
        COMPOSE_FILE,
        '["CMD", "/opt/venv/bin/python", "/opt/streamstats/healthcheck.py", "--timeout", "2"]',
        '["CMD-SHELL", "nc -z 127.0.0.1 50051"]',
        "TCP probe (nc)",
    ),
    (
        COMPOSE_FILE,
        '["CMD", "/opt/venv/bin/python", "/opt/streamstats/healthcheck.py", "--timeout", "2"]',
        "bash -c 'echo > /dev/tcp/127.0.0.1/50051' # healthcheck.py",
        "TCP probe (/dev/tcp)",
    ),
    (
        COMPOSE_FILE,
        '"/opt/streamstats/healthcheck.py", "--timeout", "2"]',
        '"/opt/streamstats/probe.py", "--timeout", "2"]',
        "probe.py is not copied",
    ),
    (
        COMPOSE_FILE,
        "    dockerfile: Dockerfile\n",
        "    dockerfile: Dockerfile.nope\n",
        "Dockerfile.nope does not exist",
    ),
    (
        COMPOSE_FILE,
        "    context: .\n    dockerfile: Dockerfile\n",
        "    context: ./nowhere\n    dockerfile: Dockerfile\n",
        "build context ./nowhere does not exist",
    ),
    (
        COMPOSE_FILE,
        "    <<: *locust\n    # Scalable",
        "    <<: *locust\n    container_name: w\n    # Scalable",
        "has container_name",
    ),
    (COMPOSE_FILE, "${LOCUST_RUN_TIME:-1m}", "${LOCUST_RUN_TIME}", "run time not bounded"),
    (COMPOSE_FILE, "${LOCUST_USERS:-20}", "${LOCUST_USERS}", "users not bounded"),
    (COMPOSE_FILE, "      - ./results:/results\n", "", "not in a folder mounted from the host"),
    (COMPOSE_FILE, '"server:50051"', '"localhost:50051"', "not server:50051"),
    (COMPOSE_FILE, '      - "--headless"\n', "", "not --headless"),
    (COMPOSE_FILE, "services:\n", "services:\n  - [\n", "does not parse"),
    (SERVER_DOCKERFILE, "USER 10001:10001", "USER root", "runs as root"),
    (SERVER_DOCKERFILE, "USER 10001:10001\n", "\n", "has no USER"),
    (SERVER_DOCKERFILE, 'CMD ["streamstats-server"]', "CMD streamstats-server", "CMD is not in exec form"),
    (SERVER_DOCKERFILE, 'CMD ["streamstats-server"]', 'CMD ["streamstats-serve"]', "not a console script"),
    (SERVER_DOCKERFILE, "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "has no HEALTHCHECK"),
    (
        SERVER_DOCKERFILE,
        'CMD ["/opt/venv/bin/python", "/opt/streamstats/healthcheck.py", "--timeout", "3"]',
        'CMD ["sh", "-c", "curl -f localhost:50051"]',
        "TCP probe (curl)",
    ),
    (SERVER_DOCKERFILE, "STREAMSTATS_HOST=0.0.0.0", "STREAMSTATS_HOST=127.0.0.1", "not 0.0.0.0"),
    (SERVER_DOCKERFILE, 'VOLUME ["/data"]', 'VOLUME ["/var/lib/x"]', "is not a VOLUME"),
    (SERVER_DOCKERFILE, "EXPOSE 50051", "EXPOSE 8080", "port 50051 is not EXPOSEd"),
    (
        SERVER_DOCKERFILE,
        "COPY docker/healthcheck.py",
        "COPY docker/health.py",
        "COPY docker/health.py: not in the build context",
    ),
    (SERVER_DOCKERFILE, "COPY --from=builder", "COPY --from=bulder", "no earlier stage"),
    (
        SERVER_DOCKERFILE,
        "FROM ${PYTHON_IMAGE} AS server",
        "FROM python:3.12 AS server",
        "not a slim Python 3.11",
    ),
    (SERVER_DOCKERFILE, "ARG PYTHON_IMAGE", "RUN true\nARG PYTHON_IMAGE", "RUN before the first FROM"),
    (
        LOCUST_DOCKERFILE,
        '"-f", "/app/loadtest/locustfile.py"',
        '"-f", "/app/loadtest/nope.py"',
        "nope.py does not exist",
    ),
    (
        LOCUST_DOCKERFILE,
        "COPY loadtest/ /app/loadtest/",
        "COPY loadtest/ /srv/loadtest/",
        "locustfile.py is not copied",
    ),
    (LOCUST_DOCKERFILE, "USER 1000:1000", "USER 0", "runs as root"),
    (
        SERVER_DOCKERFILE,
        'CMD ["streamstats-server"]',
        'CMD ["/opt/venv/bin/streamstats-srv"]',
        "neither copied nor installed",
    ),
    (
        LOCUST_DOCKERFILE,
        'ENTRYPOINT ["/usr/local/bin/locust-entrypoint", "-f", "/app/loadtest/locustfile.py"]',
        "ENTRYPOINT locust -f /app/loadtest/locustfile.py",
        "ENTRYPOINT is not in exec form",
    ),
    (ENTRYPOINT_SCRIPT, '\nexec locust "$@"', '\nlocust "$@"', "does not exec the program"),
    (HEALTHCHECK_SCRIPT, "def main(", "def main(:", "is not valid Python"),
    (".dockerignore", "\ndata\n", "\ndata\nserver\n", "COPY server/: excluded by .dockerignore"),
    (".dockerignore", "\ndata\n", "\ndata\n**/*.typed\n", ".dockerignore drops"),
    (".dockerignore", "\nsecrets\n", "\n", "the build context sends secrets"),
    (".dockerignore", "\n**/*.pem\n", "\n**/*.pem\n!secrets/server.key\n", "sends secrets/server.key"),
    # The image stays safe by default; the default server chooses plaintext explicitly.
    (
        SERVER_DOCKERFILE,
        "    STREAMSTATS_HOST=0.0.0.0 \\\n",
        "    STREAMSTATS_HOST=0.0.0.0 \\\n    STREAMSTATS_INSECURE=1 \\\n",
        "serves openly by default",
    ),
    (COMPOSE_FILE, '      STREAMSTATS_INSECURE: "1"\n', "", "does not set STREAMSTATS_INSECURE explicitly"),
    (COMPOSE_FILE, 'STREAMSTATS_INSECURE: "1"', 'STREAMSTATS_INSECURE: "0"', "refusing to listen on 0.0.0.0"),
    (COMPOSE_FILE, 'STREAMSTATS_INSECURE: "1"', 'STREAMSTATS_INSECURE: "maybe"', "would refuse to start"),
    (
        COMPOSE_FILE,
        '"127.0.0.1:${STREAMSTATS_PUBLISHED_PORT:-50051}:50051"',
        '"${STREAMSTATS_PUBLISHED_PORT:-50051}:50051"',
        "published on every address",
    ),
    (
        COMPOSE_FILE,
        "  server:\n    <<: *server\n",
        "  server:\n    <<: *server\n    profiles: [x]\n",
        "`up` skips",
    ),
    # server-secure: its profile, TLS + tokens from the read-only ./secrets, its own volume and port.
    (COMPOSE_FILE, '    profiles: ["secure"]\n', "", "not in the profile 'secure'"),
    (COMPOSE_FILE, "      STREAMSTATS_AUTH_TOKENS: /secrets/tokens.toml\n", "", "no STREAMSTATS_AUTH_TOKENS"),
    (
        COMPOSE_FILE,
        "      STREAMSTATS_TLS_KEY: /secrets/server.key\n",
        "",
        "--tls-cert and --tls-key go together",
    ),
    (
        COMPOSE_FILE,
        "      STREAMSTATS_TLS_CERT: /secrets/server.pem\n      STREAMSTATS_TLS_KEY: /secrets/server.key\n",
        "",
        "no STREAMSTATS_TLS_CERT",
    ),
    (
        COMPOSE_FILE,
        "STREAMSTATS_TLS_CERT: /secrets/server.pem",
        "STREAMSTATS_TLS_CERT: /etc/ssl/server.pem",
        "not in the read-only ./secrets mount",
    ),
    (
        COMPOSE_FILE,
        "STREAMSTATS_TLS_CERT: /secrets/server.pem",
        "STREAMSTATS_TLS_CERT: /secrets/cert.pem",
        "not a file scripts/dev_certs.py writes",
    ),
    (
        COMPOSE_FILE,
        "${STREAMSTATS_SECURE_CLIENT_CA:-}",
        "${STREAMSTATS_SECURE_CLIENT_CA:-/etc/ca.pem}",
        "STREAMSTATS_TLS_CLIENT_CA /etc/ca.pem is not in the read-only",
    ),
    (
        COMPOSE_FILE,
        "      STREAMSTATS_AUTH_TOKENS: /secrets/tokens.toml\n",
        '      STREAMSTATS_AUTH_TOKENS: /secrets/tokens.toml\n      STREAMSTATS_INSECURE: "true"\n',
        "server-secure: sets STREAMSTATS_INSECURE",
    ),
    (COMPOSE_FILE, "- ./secrets:/secrets:ro", "- ./secrets:/secrets", "writable, not read-only"),
    (COMPOSE_FILE, "- ./secrets:/secrets:ro", "- ./secrets:/secrets:rw", "writable, not read-only"),
    (COMPOSE_FILE, "- ./secrets:/secrets:ro", "- ./certs:/secrets:ro", "does not mount ./secrets"),
    (
        COMPOSE_FILE,
        "- ./secrets:/secrets:ro",
        "- ./secrets:/run/tls:ro",
        "not in the read-only ./secrets mount",
    ),
    (
        COMPOSE_FILE,
        '        - "--tls-ca"\n        - "/secrets/ca.pem"\n',
        "",
        "no healthcheck --tls-ca",
    ),
    (
        COMPOSE_FILE,
        '        - "/secrets/ca.pem"\n',
        '        - "/etc/ssl/ca.pem"\n',
        "--tls-ca /etc/ssl/ca.pem is not in",
    ),
    (
        COMPOSE_FILE,
        '        - "--tls-cert"\n        - "/secrets/client.pem"\n'
        '        - "--tls-key"\n        - "/secrets/client.key"\n',
        "",
        "no --tls-cert, which mutual TLS needs",
    ),
    (
        COMPOSE_FILE,
        '"127.0.0.1:${STREAMSTATS_SECURE_PUBLISHED_PORT:-50052}:50051"',
        '"0.0.0.0:${STREAMSTATS_SECURE_PUBLISHED_PORT:-50052}:50051"',
        "published on 0.0.0.0",
    ),
    (
        COMPOSE_FILE,
        "${STREAMSTATS_SECURE_PUBLISHED_PORT:-50052}:50051",
        "${STREAMSTATS_SECURE_PUBLISHED_PORT:-50052}:6000",
        "publishes container port 6000",
    ),
    (
        COMPOSE_FILE,
        "${STREAMSTATS_SECURE_PUBLISHED_PORT:-50052}",
        "${STREAMSTATS_SECURE_PUBLISHED_PORT:-50051}",
        "same host port",
    ),
    (COMPOSE_FILE, "- streamstats-secure-data:/data", "- streamstats-data:/data", "shares the volume"),
    (COMPOSE_FILE, "- streamstats-secure-data:/data", "- ./secure-data:/data", "no named volume mounted"),
    (COMPOSE_FILE, "\n  streamstats-secure-data:\n", "\n", "'streamstats-secure-data' is not declared"),
    (COMPOSE_FILE, 'user: "${SECRETS_UID:-1000}:10001"', 'user: "0:10001"', "runs as root"),
    (
        COMPOSE_FILE,
        'user: "${SECRETS_UID:-1000}:10001"',
        'user: "${SECRETS_UID:-1000}:${SECRETS_GID:-1000}"',
        "cannot write its data dir",
    ),
    (SERVER_DOCKERFILE, " \\\n    && chmod 0775 /data\n", "\n", "cannot write its data dir"),
    (
        COMPOSE_FILE,
        "  server-secure:\n    <<: *server\n",
        "  server-secure:\n    <<: *server\n    image: streamstats-other:latest\n",
        "does not build and run the same image",
    ),
    (COMPOSE_FILE, "  server-secure:\n", "  server-tls:\n", "no service 'server-secure'"),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), MUTATIONS)
def test_a_broken_copy_is_caught(repo_copy: Path, file: str, old: str, new: str, expected: str) -> None:
    _replace(repo_copy / file, old, new)
    problems = check_compose(repo_copy)
    assert any(expected in problem for problem in problems), problems


# -- Compose's own validation, where a Compose CLI is installed (no engine needed) ---------------------


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_config(root: Path, *profiles: str) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose / docker-compose here")
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "STREAMSTATS_", "RESULTS_"))
    }
    return subprocess.run(
        [*command, *(f"--profile={p}" for p in profiles), "-f", str(root / COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=root,
        env=environ,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("profiles", [(), (SECURE_PROFILE,)])
def test_compose_itself_validates_the_file(profiles: tuple[str, ...]) -> None:
    done = compose_config(ROOT, *profiles)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("condition: service_healthy", "condition: service_healty"),
        ('profiles: ["secure"]', "profiles: secure"),
        (
            "      retries: 3\n      start_period: 60s\n\n  master:",
            "      retries: 3\n      start_perod: 60s\n\n  master:",
        ),
    ],
)
def test_compose_itself_rejects_a_broken_copy(repo_copy: Path, old: str, new: str) -> None:
    _replace(repo_copy / COMPOSE_FILE, old, new)
    done = compose_config(repo_copy, SECURE_PROFILE)
    assert done.returncode != 0


# -- the health probe against a real server -------------------------------------------------------------


LISTENING = "streamstats-server listening on "


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSTATS_")}
    environ.update(extra)
    return environ


@contextmanager
def real_server(**env: str) -> Iterator[int]:
    """`python -m streamstats_server --port 0 --in-memory` (with env); yields the port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamstats_server", "--port", "0", "--in-memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environ(**env),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(LISTENING), (line, proc.stderr.read() if proc.stderr else "")
        yield int(line.strip().rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def run_probe(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / HEALTHCHECK_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=_environ(**env),
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


def test_the_probe_passes_against_a_serving_server() -> None:
    with real_server() as port:
        done, _ = run_probe(STREAMSTATS_PORT=str(port))
        assert done.returncode == 0, done.stderr
        assert "SERVING" in done.stdout
        done, _ = run_probe("--service", "streamstats.v1.StreamStats", STREAMSTATS_PORT=str(port))
        assert done.returncode == 0, done.stderr
        done, _ = run_probe("--service", "no.such.Service", STREAMSTATS_PORT=str(port))
        assert done.returncode == 1 and "NOT_FOUND" in done.stderr


def test_the_probe_fails_fast_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused, and nobody takes it
        port = sock.getsockname()[1]
        done, elapsed = run_probe("--timeout", "1", STREAMSTATS_PORT=str(port))
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stderr or "DEADLINE_EXCEEDED" in done.stderr
    assert elapsed < 15


def test_the_probe_fails_when_the_server_is_not_serving() -> None:
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done, _ = run_probe("--timeout", "5", STREAMSTATS_PORT=str(port))
        assert done.returncode == 1 and "NOT_SERVING" in done.stderr
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        done, _ = run_probe("--timeout", "5", STREAMSTATS_PORT=str(port))
        assert done.returncode == 0, done.stderr
    finally:
        server.stop(None)


def test_the_image_refuses_to_serve_openly_and_says_what_to_do(tmp_path: Path) -> None:
    """The server image as built (ENV STREAMSTATS_HOST=0.0.0.0, nothing else chosen): exit 2, one line."""
    image_env = stage_env(parse_dockerfile(ROOT / SERVER_DOCKERFILE).stages[-1])
    env = {k: v for k, v in image_env.items() if k.startswith("STREAMSTATS_")}
    assert env["STREAMSTATS_HOST"] == "0.0.0.0"
    # Not what the refusal depends on; only so that nothing listens on 50051 or writes /data if it regresses.
    env.update(STREAMSTATS_PORT="0", STREAMSTATS_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-m", "streamstats_server"],
        capture_output=True,
        text=True,
        env=_environ(**env),
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needed in ("refusing to listen on 0.0.0.0", "--tls-cert", "--auth-tokens", "--insecure"):
        assert needed in lines[0], lines[0]
    assert not (tmp_path / "data").exists()


# -- the health probe over TLS, against in-process servers (tests/conftest.py) ------------------------


@pytest.fixture
def storage_mode() -> str:
    return "memory"  # the probe does not care where streams are kept


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def test_the_probe_speaks_tls_and_needs_no_token(
    server_factory: ServerFactory, pki: Pki, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[token]]\nname = "ops"\nsecret = "ops-secret-0123456789"\nscopes = ["read"]\n')
    port = _port(
        server_factory(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), auth_tokens=str(tokens))
    )
    ca = str(pki.ca)
    done, _ = run_probe("--tls-ca", ca, STREAMSTATS_PORT=port)
    assert done.returncode == 0, done.stderr
    assert "(TLS)" in done.stdout and "SERVING" in done.stdout
    # The certificate is for 127.0.0.1 (dialed) and localhost; --server-name checks another name.
    done, _ = run_probe("--tls-ca", ca, "--server-name", "localhost", STREAMSTATS_PORT=port)
    assert done.returncode == 0, done.stderr
    done, _ = run_probe(
        "--tls-ca", ca, "--server-name", "db.example.com", "--timeout", "5", STREAMSTATS_PORT=port
    )
    assert done.returncode == 1 and "server name db.example.com" in done.stderr
    # Plaintext to a TLS port, a CA that did not sign it, the system's roots: all unhealthy, quickly.
    for args, shown in (
        ((), "(plaintext)"),
        (("--tls-ca", str(pki.other_ca)), f"CA {pki.other_ca}"),
        (("--tls",), "CA system roots"),
    ):
        done, elapsed = run_probe(*args, "--timeout", "5", STREAMSTATS_PORT=port)
        assert done.returncode == 1 and shown in done.stderr, (args, done.stderr)
        assert "UNAVAILABLE" in done.stderr and elapsed < 15
    done, _ = run_probe("--tls-ca", str(tmp_path / "missing.pem"), STREAMSTATS_PORT=port)
    assert done.returncode == 1 and "cannot read a TLS file" in done.stderr
    # As the image's HEALTHCHECK runs it: variables only; TLS since the server's STREAMSTATS_TLS_CERT is set.
    env = {"STREAMSTATS_PORT": port, "STREAMSTATS_TLS_CERT": str(pki.server_cert)}
    done, _ = run_probe("--timeout", "5", **env)
    assert done.returncode == 1 and "(TLS)" in done.stderr
    done, _ = run_probe(
        **env, STREAMSTATS_HEALTHCHECK_TLS_CA=ca, STREAMSTATS_HEALTHCHECK_SERVER_NAME="localhost"
    )
    assert done.returncode == 0, done.stderr


def test_the_probe_presents_a_client_certificate_for_mutual_tls(
    server_factory: ServerFactory, pki: Pki
) -> None:
    port = _port(
        server_factory(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), tls_client_ca=str(pki.ca))
    )
    ca, cert, key = str(pki.ca), str(pki.client_cert), str(pki.client_key)
    done, _ = run_probe("--tls-ca", ca, "--timeout", "5", STREAMSTATS_PORT=port)
    assert done.returncode == 1 and "client certificate none" in done.stderr
    done, _ = run_probe("--tls-ca", ca, "--tls-cert", cert, "--tls-key", key, STREAMSTATS_PORT=port)
    assert done.returncode == 0, done.stderr
    done, _ = run_probe(
        STREAMSTATS_PORT=port,
        STREAMSTATS_TLS_CERT=str(pki.server_cert),
        STREAMSTATS_HEALTHCHECK_TLS_CA=ca,
        STREAMSTATS_HEALTHCHECK_TLS_CERT=cert,
        STREAMSTATS_HEALTHCHECK_TLS_KEY=key,
    )
    assert done.returncode == 0, done.stderr
    done, _ = run_probe("--tls-ca", ca, "--tls-cert", cert, STREAMSTATS_PORT=port)
    assert done.returncode == 2 and "go together" in done.stderr


def test_the_probe_options_and_their_variables() -> None:
    module = load_script(ROOT / HEALTHCHECK_SCRIPT)
    args = module.parse_args([], {})
    assert module.tls_config(args) is None  # plaintext unless something says TLS
    args = module.parse_args([], {"STREAMSTATS_TLS_CERT": "/secrets/server.pem"})
    assert (args.tls, args.tls_ca, args.tls_cert, args.server_name) == (True, None, None, None)
    environ = {
        "STREAMSTATS_HEALTHCHECK_TLS_CA": "/a/ca.pem",
        "STREAMSTATS_HEALTHCHECK_TLS_CERT": "/a/c.pem",
        "STREAMSTATS_HEALTHCHECK_TLS_KEY": "/a/c.key",
        "STREAMSTATS_HEALTHCHECK_SERVER_NAME": "localhost",
    }
    args = module.parse_args([], environ)
    assert (args.tls_ca, args.tls_cert, args.tls_key, args.server_name) == (
        "/a/ca.pem",
        "/a/c.pem",
        "/a/c.key",
        "localhost",
    )
    args = module.parse_args(["--tls-ca", "/b/ca.pem", "--server-name", "server-secure"], environ)
    assert (args.tls_ca, args.server_name) == ("/b/ca.pem", "server-secure")


# -- the compose profile "secure", run for real outside Docker with scripts/dev_certs.py's files ----------


def test_the_secure_service_starts_with_dev_certs_and_its_health_check_passes(tmp_path: Path) -> None:
    """server-secure's environment and healthcheck, with /secrets pointing at a dev_certs.py folder.

    The image's ENV, then the service's environment, as compose gives them; only the address (loopback,
    port 0) and the storage (in memory) differ from the container. Then with mutual TLS, as
    STREAMSTATS_SECURE_CLIENT_CA=/secrets/ca.pem turns it on.
    """
    secrets_dir = tmp_path / "secrets"
    made = subprocess.run(
        [sys.executable, str(ROOT / DEV_CERTS_SCRIPT), "--out", str(secrets_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    service = yaml.safe_load((ROOT / COMPOSE_FILE).read_text())["services"][SECURE_SERVICE]
    mount = next(m for m in _volume_entries(service) if m.source == SECRETS_SOURCE)

    def local(word: str) -> str:
        return (
            str(secrets_dir / posixpath.relpath(word, mount.target)) if _under(word, mount.target) else word
        )

    image_env = stage_env(parse_dockerfile(ROOT / SERVER_DOCKERFILE).stages[-1])
    env = {
        key: local(value)
        for key, value in {**image_env, **as_env(service["environment"])}.items()
        if key.startswith("STREAMSTATS_")
    }
    assert env["STREAMSTATS_TLS_CERT"].startswith(str(secrets_dir)) and not env["STREAMSTATS_TLS_CLIENT_CA"]
    assert "${STREAMSTATS_SECURE_CLIENT_CA:-}" in str(service["environment"]["STREAMSTATS_TLS_CLIENT_CA"])
    env["STREAMSTATS_HOST"] = "127.0.0.1"
    probe = [local(word) for word in as_argv(service["healthcheck"]["test"])]
    assert probe[:3] == ["CMD", "/opt/venv/bin/python", "/opt/streamstats/healthcheck.py"]
    for client_ca in ("", local(f"{mount.target}/ca.pem")):
        env["STREAMSTATS_TLS_CLIENT_CA"] = client_ca
        with real_server(**env) as port:
            done, _ = run_probe(*probe[3:], STREAMSTATS_PORT=str(port))
            assert done.returncode == 0, (client_ca, done.stderr)
            # TLS and tokens for real: over TLS with the CA, a call without a token is refused.
            credentials = grpc.ssl_channel_credentials(
                root_certificates=(secrets_dir / "ca.pem").read_bytes(),
                private_key=(secrets_dir / "client.key").read_bytes(),
                certificate_chain=(secrets_dir / "client.pem").read_bytes(),
            )
            with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    pb_grpc.StreamStatsStub(channel).ListStreams(pb.ListStreamsRequest(), timeout=10)
                assert isinstance(refused.value, grpc.Call)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
