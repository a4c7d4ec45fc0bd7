"""Render the Alertmanager config from its template, with secrets that never enter the repo.

Alertmanager 0.25 reads Slack's URL and the scaler's token from files (``api_url_file``,
``credentials_file``) but has no ``webhook_url_file`` for Discord, so the Discord URL has to be in
the config itself. This renders ``alert-rules/alertmanager/alertmanager.yml.in`` into a file that
is written atomically with mode 0600 (a world-readable mode is refused, and so is a target inside a
git work tree unless asked), taking each ``${NAME}`` from ``--set NAME=VALUE``, the environment
variable ``NAME``, or the file named by ``NAME_FILE``. Secrets may come only from the environment or
a file (never the command line, which ``ps`` shows) and are registered so they are never logged.

    agentwatch render-alertmanager --out /etc/alertmanager/alertmanager.yml --check
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from agentwatch.log import redact, register_secret

DEFAULT_TEMPLATE = Path("alert-rules/alertmanager/alertmanager.yml.in")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
#: Values that may only come from the environment or a file.
SECRETS = frozenset({"AGENTWATCH_DISCORD_WEBHOOK_URL"})
#: Characters a substituted value may hold: it lands inside a double-quoted YAML scalar.
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~:/?#@!$&()*+,;=%-]*)?$")
RENDERED_HEADER = "# RENDERED by agentwatch render-alertmanager; holds secrets: mode 0600, never commit it.\n"
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")


class RenderError(Exception):
    """The template, a value or the output is unusable; the message never holds a secret."""


def defaults(template: Path) -> dict[str, str]:
    """Values used when nothing else sets them."""
    return {
        "AGENTWATCH_SECRETS_DIR": "/run/secrets",
        "AGENTWATCH_SCALER_URL": "http://127.0.0.1:9848/webhook",
        "AGENTWATCH_TEMPLATES_DIR": str((template.parent / "templates").resolve()),
    }


def _validator(name: str) -> tuple[re.Pattern[str], str]:
    if name.endswith("_URL"):
        return _SAFE_URL, "an http(s) URL without spaces or quotes"
    if name.endswith("_DIR"):
        return _SAFE_PATH, "an absolute path of letters, digits and . _ / @ + -"
    return re.compile(r"^[A-Za-z0-9._:/@+-]+$"), "letters, digits and . _ : / @ + -"


def resolve(names: set[str], overrides: Mapping[str, str], env: Mapping[str, str],
            fallback: Mapping[str, str]) -> dict[str, str]:
    """The value of every placeholder: --set, then NAME, then NAME_FILE, then the default."""
    values: dict[str, str] = {}
    for name in sorted(names):
        if name in overrides:
            if name in SECRETS:
                raise RenderError(f"{name} is a secret: give it in the environment ({name}) or a file ({name}_FILE), "
                                  "not on the command line")
            value = overrides[name]
        elif env.get(name):
            value = env[name]
        elif env.get(f"{name}_FILE"):
            path = env[f"{name}_FILE"]
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise RenderError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        elif name in fallback:
            value = fallback[name]
        else:
            raise RenderError(f"{name} is required: set the environment variable {name} or {name}_FILE")
        if name in SECRETS:
            register_secret(value)
        pattern, expected = _validator(name)
        if not pattern.match(value):
            shown = "(hidden)" if name in SECRETS else repr(value)
            raise RenderError(f"{name}: expected {expected} (got {shown})")
        values[name] = value
    return values


def render(template_text: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders replaced; the result must be a YAML mapping."""
    text = RENDERED_HEADER + PLACEHOLDER.sub(lambda m: values[m.group(1)], template_text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"the rendered config is not valid YAML: {redact(str(exc))}") from None
    if not isinstance(data, dict) or "route" not in data or "receivers" not in data:
        raise RenderError("the rendered config has no route or receivers: is --template an Alertmanager template?")
    return text


def _in_git_tree(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / ".git").exists():
            return parent
    return None


def write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` atomically with ``mode``; refuse any permission for others."""
    if mode & 0o007:
        raise RenderError(f"{path}: mode {mode:04o} gives others access; the file holds secrets (use 0600 or 0640)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _parse_set(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not PLACEHOLDER.fullmatch(f"${{{name}}}"):
            raise RenderError(f"--set {item.split('=')[0]!r}: expected NAME=VALUE with an upper-case NAME")
        out[name] = value
    return out


def check_with_amtool(path: Path) -> int:
    """``amtool check-config`` on the rendered file; its exit code."""
    binary = shutil.which("amtool")
    if not binary:
        raise RenderError("--check needs amtool (apt-get install prometheus-alertmanager)")
    proc = subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False)
    sys.stdout.write(redact(proc.stdout))
    sys.stderr.write(redact(proc.stderr))
    return proc.returncode


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``agentwatch render-alertmanager``: 0 on success, 1 if --check fails, 2 on an error."""
    parser = argparse.ArgumentParser(prog="agentwatch render-alertmanager",
                                     description="Render the Alertmanager config with its secrets (mode 0600).")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="the rendered config (never commit it)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a non-secret value")
    parser.add_argument("--mode", type=lambda s: int(s, 8), default=0o600, help="octal file mode (default 0600)")
    parser.add_argument("--allow-in-git-tree", action="store_true",
                        help="write even inside a git work tree (make sure the file is ignored)")
    parser.add_argument("--check", action="store_true", help="run amtool check-config on the result")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        template = args.template
        try:
            template_text = template.read_text()
        except OSError as exc:
            raise RenderError(f"{template}: cannot read the template: {exc.strerror} (pass --template)") from None
        if args.out.resolve() == template.resolve():
            raise RenderError(f"{args.out}: refusing to overwrite the template")
        repo = _in_git_tree(args.out)
        if repo is not None and not args.allow_in_git_tree:
            raise RenderError(f"{args.out}: inside the git work tree {repo}; the rendered file holds secrets and must "
                              "not be committed (write it elsewhere, or pass --allow-in-git-tree)")
        values = resolve(set(PLACEHOLDER.findall(template_text)), _parse_set(args.set), env, defaults(template))
        write_private(args.out, render(template_text, values), args.mode)
    except RenderError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (mode {args.mode:04o})")
    if args.check:
        try:
            return 0 if check_with_amtool(args.out) == 0 else 1
        except (RenderError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
