"""Render the Alertmanager config from its template, with secrets that never enter the repo.

Alertmanager 0.25 reads Slack's URL and the scaler's token from files (``api_url_file``,
``credentials_file``) but has no ``webhook_url_file`` for Discord, so the Discord URL has to be in
the config itself. This renders the template shipped in this package (``alertmanager/`` beside
this module; ``alert-rules/alertmanager`` in the repo points here) into a file that is written
atomically with mode 0600 (a world-readable mode is refused, and so is a target inside a git work
tree unless asked), taking each ``${NAME}`` from ``--set NAME=VALUE``, the environment variable
``NAME``, or the file named by ``NAME_FILE``. Secrets may come only from the environment or a file
(never the command line, which ``ps`` shows) and are registered so they are never logged.

Every channel is optional. One that is not configured (Discord without its URL; Slack or the
scaler without the file Alertmanager would read) is left out with the receivers and routes that
only it served, and a line on stderr says so; ``--channels`` names the wanted ones explicitly.

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from agentwatch.log import redact, register_secret

TEMPLATE_DIR = Path(__file__).resolve().parent / "alertmanager"
DEFAULT_TEMPLATE = TEMPLATE_DIR / "alertmanager.yml.in"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
#: Values that may only come from the environment or a file.
SECRETS = frozenset({"AGENTWATCH_DISCORD_WEBHOOK_URL"})
#: Receiver config kinds by the channel name used on the command line and in messages.
CHANNELS = {"scaler": "webhook_configs", "slack": "slack_configs", "discord": "discord_configs"}
#: Where alerts go that no remaining route takes: kept in Alertmanager, sent nowhere.
NOBODY = "nobody"
#: Characters a substituted value may hold.
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


def given(name: str, overrides: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Whether ``name`` has a value of its own (not a default)."""
    return name in overrides or bool(env.get(name)) or bool(env.get(f"{name}_FILE"))


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


# --- the config as data: placeholders, channels, pruning ------------------------------------------

def _strings(node: Any, fn: Callable[[str], str]) -> Any:
    """``node`` with ``fn`` applied to every string value (keys are left alone)."""
    if isinstance(node, dict):
        return {k: _strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_strings(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def placeholders(node: Any) -> set[str]:
    """Names of every ``${NAME}`` in the string values below ``node``."""
    if isinstance(node, dict):
        return {n for v in node.values() for n in placeholders(v)}
    if isinstance(node, list):
        return {n for v in node for n in placeholders(v)}
    return set(PLACEHOLDER.findall(node)) if isinstance(node, str) else set()


def substitute(node: Any, values: Mapping[str, str]) -> Any:
    """Placeholders replaced inside string values only, so no value can change the YAML's shape."""
    return _strings(node, lambda s: PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), s))


def _files(node: Any) -> list[str]:
    """Values of every ``*_file`` key below ``node``: what Alertmanager will read at send time."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k.endswith("_file") and isinstance(v, str)] + \
            [f for v in node.values() for f in _files(v)]
    if isinstance(node, list):
        return [f for v in node for f in _files(v)]
    return []


def channels_in(config: dict[str, Any]) -> dict[str, list[Any]]:
    """Channel name -> every receiver config of that kind in ``config``."""
    kinds = {kind: name for name, kind in CHANNELS.items()}
    found: dict[str, list[Any]] = {}
    for receiver in config.get("receivers") or []:
        for key, value in receiver.items():
            if key.endswith("_configs"):
                found.setdefault(kinds.get(key, key.removesuffix("_configs")), []).extend(value or [])
    return found


def missing(channel: str, configs: list[Any], config: dict[str, Any], overrides: Mapping[str, str],
            env: Mapping[str, str]) -> str | None:
    """Why ``channel`` is not configured here, or None: a secret not given, or a file Alertmanager reads absent."""
    for name in sorted(placeholders(configs) & SECRETS):
        if not given(name, overrides, env):
            return f"{name} is not set (nor {name}_FILE)"
    files = _files(configs)
    if channel == "slack" and not any("api_url" in c for c in configs if isinstance(c, dict)):
        files += [f for f in [config.get("global", {}).get("slack_api_url_file")] if isinstance(f, str)]
    for path in files:
        if not PLACEHOLDER.search(path) and not Path(path).is_file():
            return f"{path} does not exist here"
    return None


def prune(config: dict[str, Any], keep: set[str]) -> list[str]:
    """Remove every channel not in ``keep``, then receivers left empty and the routes to them; the receivers removed.

    A removed route's alerts fall through to the next matching sibling, as Alertmanager routes do;
    if the root's receiver goes, the root sends to ``nobody`` (a receiver without configs).
    """
    drop = {kind for name, kind in CHANNELS.items() if name not in keep}
    drop |= {k for r in config.get("receivers") or [] for k in r
             if k.endswith("_configs") and k not in CHANNELS.values() and k.removesuffix("_configs") not in keep}
    removed: list[str] = []
    receivers = []
    for receiver in config.get("receivers") or []:
        for key in drop:
            receiver.pop(key, None)
        if any(k.endswith("_configs") for k in receiver):
            receivers.append(receiver)
        else:
            removed.append(receiver["name"])
    if "slack" not in keep and isinstance(config.get("global"), dict):
        config["global"].pop("slack_api_url", None)
        config["global"].pop("slack_api_url_file", None)

    def prune_routes(route: dict[str, Any]) -> None:
        children = [r for r in route.get("routes") or [] if r.get("receiver") not in removed]
        for child in children:
            prune_routes(child)
        if children:
            route["routes"] = children
        else:
            route.pop("routes", None)

    route = config.get("route") or {}
    prune_routes(route)
    if route.get("receiver") in removed:
        route["receiver"] = NOBODY
        receivers.append({"name": NOBODY})
    config["receivers"] = receivers
    return removed


def _load_template(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"the template is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "route" not in data or "receivers" not in data:
        raise RenderError("the template has no route or receivers: is --template an Alertmanager template?")
    return data


def render(template_text: str, overrides: Mapping[str, str], env: Mapping[str, str], fallback: Mapping[str, str],
           wanted: set[str] | None = None, note: Callable[[str], None] = lambda _: None) -> str:
    """The rendered config: channels chosen (``wanted``, else those configured here), then values filled in."""
    config = _load_template(template_text)
    plain = resolve(placeholders(config) - SECRETS, overrides, env, fallback)
    config = substitute(config, plain)
    present = channels_in(config)
    if wanted is None:
        keep = set()
        for channel, configs in present.items():
            reason = missing(channel, configs, config, overrides, env)
            if reason is None:
                keep.add(channel)
            else:
                note(f"{channel} left out: {reason}")
    else:
        unknown = wanted - set(present)
        if unknown:
            raise RenderError(f"--channels: {', '.join(sorted(unknown))} not in the template "
                              f"(it has {', '.join(sorted(present)) or 'none'})")
        keep = wanted
    removed = prune(config, keep)
    if removed:
        note(f"receivers removed with their routes: {', '.join(removed)}")
    if config["route"].get("receiver") == NOBODY:
        note(f"alerts that no remaining route takes go to '{NOBODY}': kept in Alertmanager, sent nowhere")
    config = substitute(config, resolve(placeholders(config), overrides, env, fallback))
    kept = ", ".join(sorted(keep)) or "none"
    return RENDERED_HEADER + f"# channels: {kept}\n" + yaml.safe_dump(config, sort_keys=False, width=1 << 16)


# --- writing and checking ------------------------------------------------------------------------

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


def _parse_channels(value: str) -> set[str]:
    names = {v.strip() for v in value.split(",") if v.strip()}
    return set() if names == {"none"} else names


def check_with_amtool(path: Path) -> int:
    """``amtool check-config`` on the rendered file; its exit code."""
    binary = shutil.which("amtool")
    if not binary:
        raise RenderError("--check needs amtool (apt-get install prometheus-alertmanager)")
    proc = subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False)
    sys.stdout.write(redact(proc.stdout))
    sys.stderr.write(redact(proc.stderr))
    return proc.returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch render-alertmanager",
        description="Render the Alertmanager config with its secrets (mode 0600). Reads AGENTWATCH_DISCORD_WEBHOOK_URL "
                    "(or _FILE), AGENTWATCH_SECRETS_DIR, AGENTWATCH_SCALER_URL, AGENTWATCH_TEMPLATES_DIR (each also "
                    "as NAME_FILE); Slack's URL and the scaler's token stay in files Alertmanager reads itself.")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE,
                        help="default: the template shipped with agentwatch (%(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="the rendered config (never commit it)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a non-secret value")
    parser.add_argument("--channels", type=_parse_channels, metavar="LIST",
                        help="comma-separated channels to keep: scaler, slack, discord, or none (default: each one "
                             "configured here: Discord's URL given, Slack's and the scaler's files present)")
    parser.add_argument("--mode", type=lambda s: int(s, 8), default=0o600, help="octal file mode (default 0600)")
    parser.add_argument("--allow-in-git-tree", action="store_true",
                        help="write even inside a git work tree (make sure the file is ignored)")
    parser.add_argument("--check", action="store_true", help="run amtool check-config on the result")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``agentwatch render-alertmanager``: 0 on success, 1 if --check fails, 2 on an error."""
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env

    def note(message: str) -> None:
        print(f"agentwatch render-alertmanager: {redact(message)}", file=sys.stderr)

    try:
        template = args.template
        try:
            template_text = template.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise RenderError(f"{template}: cannot read the template: {reason} (pass --template)") from None
        if args.out.resolve() == template.resolve():
            raise RenderError(f"{args.out}: refusing to overwrite the template")
        repo = _in_git_tree(args.out)
        if repo is not None and not args.allow_in_git_tree:
            raise RenderError(f"{args.out}: inside the git work tree {repo}; the rendered file holds secrets and must "
                              "not be committed (write it elsewhere, or pass --allow-in-git-tree)")
        text = render(template_text, _parse_set(args.set), env, defaults(template), args.channels, note)
        write_private(args.out, text, args.mode)
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
