"""Config files and the flags that override them, validated by the same models.

Every agentwatch config model derives from ``Strict`` (an unknown key is an error, not a silent
default). ``load_model`` reads a YAML file into a model; ``with_overrides`` puts command-line
flags through the same model, so ``--interval -1`` fails exactly like ``interval_seconds: -1`` in
a file. Each problem is one line naming the file (or the flag), the dotted key and what was
expected; the file size, the number of lines and the values quoted in them are bounded.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

import yaml

from agentwatch.schema import MISSING, After, Model, ValidationError, dotted

#: A config file larger than this is refused before it is parsed (real ones are a few KiB).
MAX_FILE_BYTES = 1 << 20
#: At most this many problems are listed; the rest are counted in one more line.
MAX_PROBLEMS = 20
#: A value quoted in a message is cut to this many characters.
MAX_QUOTED = 80
LISTEN_EXAMPLE = "127.0.0.1:9847"
#: libyaml's safe loader when PyYAML has it (several times faster on a file at the size bound).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """A config file or flag that cannot be used; one line per problem, naming file or flag and key."""


class Strict(Model):
    """Base for config models: unknown keys are errors, loaded values never change."""


M = TypeVar("M", bound=Model)


class Named(Protocol):
    """Anything with a ``name`` (a probe server, a process group)."""

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def require_unique_names(items: list[N], what: str) -> list[N]:
    """Reject lists whose items share a ``name`` (their series would collide)."""
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {', '.join(dupes)}")
    return items


def check_regex(value: str | None) -> str | None:
    """A field validator: the value compiles as a Python regular expression (or is None)."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def quoted(value: object) -> str:
    """``repr(value)``, cut to MAX_QUOTED characters: a 50 MB value must not become a 50 MB message."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED - 3] + "..."


# --- secrets -------------------------------------------------------------------------------


def read_secret(env: str | None, file: str | None) -> str | None:
    """A secret from an environment variable, else the first line of a file; None if neither has one.

    Secrets never live in the config file itself, only the names of where to find them.
    """
    if env:
        value = os.environ.get(env, "").strip()
        if value:
            return value
    if file:
        try:
            lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        if lines and lines[0].strip():
            return lines[0].strip()
    return None


# --- listen addresses ----------------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_DOTTED = re.compile(r"[0-9.]+")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?")


def parse_listen(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raise ValueError saying what was expected (not the value).

    A host that can never be bound (``999.1.1.1``, ``[1::2::3]``) is refused here, so
    ``check-config`` catches it rather than the server at start.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as {LISTEN_EXAMPLE}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host or _DOTTED.fullmatch(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host {quoted(host)} is not an IP address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"host {quoted(host)} is neither a host name nor an IP address")
    return host, int(port)


def _valid_listen(value: str) -> str:
    parse_listen(value)
    return value


#: A HOST:PORT field; the same check applies to the --listen flags, which override such fields.
ListenAddress = Annotated[str, After(_valid_listen)]


# --- messages --------------------------------------------------------------------------------


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, what was expected, with the value found when it is short enough to quote)."""
    out = []
    for problem in exc.errors():
        msg = problem.msg
        if problem.input is not MISSING and not isinstance(problem.input, dict | list):
            msg += f" (got {quoted(problem.input)})"
        out.append((dotted(problem.loc), msg))
    return out


def _bounded(lines: list[str]) -> str:
    if len(lines) > MAX_PROBLEMS:
        lines = [*lines[:MAX_PROBLEMS], f"... and {len(lines) - MAX_PROBLEMS} more problems"]
    return "\n".join(lines)


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: key: what was expected (got ...)``, at most MAX_PROBLEMS."""
    return _bounded([f"{source}: {key}: {msg}" for key, msg in _problems(exc)])


# --- loading -------------------------------------------------------------------------------


def _read_text(path: str | os.PathLike[str]) -> str:
    source = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES // 1024} KiB; not a config file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}, line {line})") from None


def load_model(path: str | os.PathLike[str] | None, model: type[M]) -> M:
    """Read a YAML file into a model; None gives the model's defaults. Problems raise ConfigError."""
    if path is None:
        return model()
    source = str(path)
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader (libyaml when present)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


# --- flags ---------------------------------------------------------------------------------


def flag_dest(flag: str) -> str:
    """argparse's attribute for a flag: ``--log-format`` -> ``log_format``."""
    return flag.lstrip("-").replace("-", "_")


def with_overrides(config: M, args: argparse.Namespace, flags: Mapping[str, str]) -> M:
    """``config`` with the flags that were given replacing their keys, validated like the file.

    ``flags`` maps each flag (``--interval``) to the dotted key it overrides (``interval_seconds``);
    the value is ``args``' attribute for the flag, None when the flag was not given. The merged data
    goes through the model again, so a value the file could not hold is refused with a ConfigError
    that names the flag: ``--interval: Input should be greater than 0 (got -1.0)``.
    """
    given = {flag: key for flag, key in flags.items() if getattr(args, flag_dest(flag), None) is not None}
    if not given:
        return config
    data = config.model_dump()
    for flag, key in given.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = getattr(args, flag_dest(flag))
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_bounded([f"{_where(key, given)}: {msg}" for key, msg in _problems(exc)])) from None


def _where(key: str, given: Mapping[str, str]) -> str:
    """The flag a problem at ``key`` comes from (with the key when it is deeper than the flag's)."""
    for flag, flag_key in given.items():
        if key == flag_key:
            return flag
        if key.startswith(flag_key + "."):
            return f"{flag} ({key})"
    return f"{', '.join(given)} ({key})"  # a check across keys
