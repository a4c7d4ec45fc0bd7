"""The scaler's policy file: targets (the allowlist), rules, limits, auth, state and audit paths.

Validated on load like every agentwatch config: unknown keys, bad regexes, unknown targets and
actions a target cannot take are errors that name the file and the dotted key.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, get_args

from agentwatch.configfile import ListenAddress, Strict, check_regex, load_model, read_secret, require_unique_names
from agentwatch.schema import Before, Field, field_validator, model_validator

DEFAULT_LISTEN = "127.0.0.1:9848"

Action = Literal["scale_up", "scale_down", "resize_memory", "set_concurrency", "drain", "restart", "notify"]
ACTIONS: tuple[str, ...] = get_args(Action)

#: Which actions each kind of target can take.
ACTIONS_BY_KIND: dict[str, frozenset[str]] = {
    "compose_service": frozenset({"scale_up", "scale_down", "resize_memory", "restart"}),
    "swarm_service": frozenset({"scale_up", "scale_down", "resize_memory"}),
    "kubernetes_deployment": frozenset({"scale_up", "scale_down", "resize_memory"}),
    "container": frozenset({"resize_memory", "restart"}),
    "agent_server": frozenset({"set_concurrency", "drain"}),
    "notify": frozenset({"notify"}),
}
#: Actions that a resolved alert can undo (back to the value seen before the first action; a drain
#: is undone by stopping it).
REVERSIBLE = frozenset({"scale_up", "scale_down", "resize_memory", "set_concurrency", "drain", "notify"})

TEMPLATE_RE = re.compile(r"\{\{\s*(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_bytes(value: Any) -> Any:
    """Accept 512MiB, 2GiB, 1.5g, -1GiB or a plain integer; anything else goes to the int conversion."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError("expected a size such as 512MiB, 2GiB or a number of bytes")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return value


Bytes = Annotated[int, Before(parse_bytes)]
PosBytes = Annotated[int, Before(parse_bytes), Field(gt=0)]


class AuthConfig(Strict):
    """Where the bearer token for /webhook and /actions comes from (never from this file)."""

    token_env: str | None = "AGENTWATCH_SCALER_TOKEN"
    token_file: str | None = None

    def token(self) -> str | None:
        return read_secret(self.token_env, self.token_file)


class RateLimit(Strict):
    """A global cap on actions (dry-run ones included), over a sliding window."""

    max_actions: int = Field(default=10, ge=1, le=100_000)
    per_seconds: float = Field(default=60.0, gt=0, le=86_400)


class RetryConfig(Strict):
    """A failed action is retried with exponential backoff, then recorded as failed."""

    attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0, le=300)
    max_backoff_seconds: float = Field(default=30.0, ge=0, le=3600)
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


class HostLimits(Strict):
    """Whole-host caps; they block scale_up only, never the actions that reduce load."""

    max_total_replicas: int | None = Field(default=None, ge=1)
    max_total_memory_bytes: PosBytes | None = None


class HttpLimits(Strict):
    """How long a client may take and how many may be connected, so slow or idle clients cannot pile up."""

    #: From connecting (or from the previous response) to complete request headers; also the idle
    #: keep-alive limit. A connection that misses it is closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: The whole webhook body must arrive within this (408 and closed otherwise).
    body_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    #: Open connections at once; one more is answered 503 and closed.
    max_connections: int = Field(default=100, ge=1, le=10_000)


class DockerBackendConfig(Strict):
    host: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_workers: int = Field(default=4, ge=1, le=32)
    stop_timeout_seconds: int = Field(default=10, ge=0, le=600)


class KubernetesBackendConfig(Strict):
    """How the scaler reaches the Kubernetes API: in the cluster (its service account), or a kubeconfig."""

    #: A kubeconfig file; None: the in-cluster service account (the scaler runs as a pod).
    kubeconfig: str | None = None
    #: The kubeconfig context to use (None: its current context).
    context: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_workers: int = Field(default=4, ge=1, le=32)


class _MemoryBounds(Strict):
    min_memory_bytes: PosBytes | None = None
    max_memory_bytes: PosBytes | None = None

    @model_validator(mode="after")
    def _memory_order(self) -> Any:
        lo, hi = self.min_memory_bytes, self.max_memory_bytes
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_memory_bytes must not exceed max_memory_bytes")
        return self


class _ReplicaBounds(_MemoryBounds):
    min_replicas: int = Field(default=1, ge=0, le=10_000)
    max_replicas: int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _replica_order(self) -> Any:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ComposeServiceTarget(_ReplicaBounds):
    """A compose service on one engine, scaled by creating or removing copies of its containers."""

    kind: Literal["compose_service"]
    project: str = Field(min_length=1)
    service: str = Field(min_length=1)


class SwarmServiceTarget(_ReplicaBounds):
    """A Swarm service, scaled and resized through the engine's services API."""

    kind: Literal["swarm_service"]
    service: str = Field(min_length=1)


class KubernetesDeploymentTarget(_ReplicaBounds):
    """A Kubernetes Deployment: replicas through its scale subresource, memory in its pod template."""

    kind: Literal["kubernetes_deployment"]
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    deployment: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    #: The container whose memory resize_memory sets (None: the pod template's first container).
    container: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ContainerTarget(_MemoryBounds):
    """One container by name or id."""

    kind: Literal["container"]
    container: str = Field(min_length=1)


class AgentServerEndpoints(Strict):
    status: str = Field(default="/api/deploy/status", pattern=r"^/")
    concurrency: str = Field(default="/api/deploy/concurrency", pattern=r"^/")
    drain: str = Field(default="/api/deploy/drain", pattern=r"^/")


class AgentServerTarget(Strict):
    """An agent server whose maxConcurrency and drain are driven through its authenticated API."""

    kind: Literal["agent_server"]
    url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = None
    api_key_file: str | None = None
    #: maxConcurrency is never lowered below this floor.
    min_concurrency: int = Field(default=1, ge=0)
    #: Restoring never goes above this (defaults to the value seen before the first lowering).
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    endpoints: AgentServerEndpoints = Field(default_factory=AgentServerEndpoints)

    def api_key(self) -> str | None:
        return read_secret(self.api_key_env, self.api_key_file)


class NotifyTarget(Strict):
    """A Slack or Discord incoming webhook; its URL is a secret, read from env or a file."""

    kind: Literal["notify"]
    flavor: Literal["slack", "discord"] = "slack"
    url_env: str | None = None
    url_file: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _has_source(self) -> Any:
        if not (self.url_env or self.url_file):
            raise ValueError("a notify target needs url_env or url_file (the URL is a secret)")
        return self

    def url(self) -> str | None:
        return read_secret(self.url_env, self.url_file)


Target = Annotated[
    ComposeServiceTarget | SwarmServiceTarget | KubernetesDeploymentTarget | ContainerTarget | AgentServerTarget
    | NotifyTarget,
    Field(discriminator="kind"),
]


class Rule(Strict):
    """Alert (alertname + label matchers) -> one action on one allowlisted target."""

    name: str = Field(pattern=NAME_PATTERN)
    alertname: str | None = None
    #: Label equality matchers.
    match: dict[str, str] = Field(default_factory=dict)
    #: Label regex matchers, anchored like Prometheus' =~.
    match_re: dict[str, str] = Field(default_factory=dict)
    action: Action
    #: A target name, or a template such as "{{ labels.compose_service }}" that must resolve to one.
    target: str = Field(min_length=1)
    priority: int = Field(default=0, ge=-1000, le=1000)
    cooldown_seconds: float = Field(default=300.0, ge=0, le=7 * 86_400)
    #: Replicas (scale_*) or concurrency (set_concurrency, mode lower) per action.
    step: int = Field(default=1, ge=1, le=1000)
    #: Multiply memory (resize_memory) or concurrency (set_concurrency lower) by this instead.
    factor: float | None = Field(default=None, gt=0, le=16)
    #: Add this to the memory limit (resize_memory); may be negative, e.g. "-512MiB".
    step_bytes: Bytes | None = None
    #: set_concurrency: lower it, or restore it to the value seen before the first lowering.
    mode: Literal["lower", "restore"] = "lower"
    #: notify: the message; {{ labels.x }} and {{ annotations.x }} are filled in.
    message: str | None = Field(default=None, max_length=2000)
    #: reverse: once the alert resolves and stays resolved for stabilization_seconds, undo.
    on_resolved: Literal["none", "reverse"] = "none"
    stabilization_seconds: float = Field(default=300.0, ge=0, le=7 * 86_400)

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            check_regex(pattern)
        return value

    @field_validator("target")
    @classmethod
    def _template(cls, value: str) -> str:
        rest = TEMPLATE_RE.sub("", value)
        if "{{" in rest or "}}" in rest:
            raise ValueError("only {{ labels.NAME }} and {{ annotations.NAME }} may be templated")
        return value

    @model_validator(mode="after")
    def _params(self) -> Any:
        if self.action == "resize_memory":
            if (self.factor is None) == (self.step_bytes is None):
                raise ValueError("resize_memory needs exactly one of factor or step_bytes")
            if self.factor == 1 or self.step_bytes == 0:
                raise ValueError("resize_memory with factor 1 or step_bytes 0 changes nothing")
        if self.on_resolved == "reverse":
            if self.action not in REVERSIBLE:
                raise ValueError(f"{self.action} cannot be reversed; use on_resolved: none")
            if self.action == "set_concurrency" and self.mode == "restore":
                raise ValueError("a restore cannot be reversed; use on_resolved: none")
        return self

    @property
    def templated(self) -> bool:
        return bool(TEMPLATE_RE.search(self.target))


class ScalerConfig(Strict):
    """The whole scaler policy file."""

    listen: ListenAddress = DEFAULT_LISTEN
    #: Log and record decisions without acting. The safe default.
    dry_run: bool = True
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    http: HttpLimits = Field(default_factory=HttpLimits)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    state_file: str = "agentwatch-scaler-state.json"
    audit_log: str = "agentwatch-scaler-audit.jsonl"
    #: The audit log is rotated when a line would take it past this size ...
    audit_max_bytes: Bytes = Field(default=10 * 1_048_576, ge=4096, le=1 << 40)
    #: ... and this many rotated files are kept (audit.jsonl.1 is the newest); 0 keeps none.
    audit_backups: int = Field(default=5, ge=0, le=100)
    #: Alert instances (fingerprint + startsAt) are remembered this long to drop repeats.
    dedupe_ttl_seconds: float = Field(default=86_400.0, ge=1, le=30 * 86_400)
    #: At most this many are remembered (the oldest go first); the state file grows ~30 bytes each.
    max_dedupe_entries: int = Field(default=10_000, ge=100, le=1_000_000)
    recent_decisions: int = Field(default=200, ge=1, le=10_000)
    #: How often pending reverse actions (after stabilisation) are checked.
    tick_seconds: float = Field(default=1.0, gt=0, le=60)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    limits: HostLimits = Field(default_factory=HostLimits)
    docker: DockerBackendConfig = Field(default_factory=DockerBackendConfig)
    kubernetes: KubernetesBackendConfig = Field(default_factory=KubernetesBackendConfig)
    #: The allowlist: the only things an action can ever touch.
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Target] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_fit_targets(self) -> Any:
        require_unique_names(self.rules, "rule")
        for i, rule in enumerate(self.rules):
            if rule.templated:
                if not any(rule.action in ACTIONS_BY_KIND[t.kind] for t in self.targets.values()):
                    raise ValueError(f"rules[{i}]: no target in targets can take {rule.action}")
                continue
            target = self.targets.get(rule.target)
            if target is None:
                raise ValueError(f"rules[{i}].target: {rule.target!r} is not in targets "
                                 f"(known: {', '.join(sorted(self.targets)) or 'none'})")
            problem = target_problem(rule, target)
            if problem:
                raise ValueError(f"rules[{i}]: {problem}")
        return self


def target_problem(rule: Rule, target: Any) -> str | None:
    """Why ``rule`` cannot act on ``target``, or None (used at load and for templated targets)."""
    if rule.action not in ACTIONS_BY_KIND[target.kind]:
        return f"a {target.kind} target cannot take {rule.action}"
    if rule.action == "resize_memory" and (target.min_memory_bytes is None or target.max_memory_bytes is None):
        return "resize_memory needs min_memory_bytes and max_memory_bytes on the target"
    return None


def load(path: str | os.PathLike[str] | None) -> ScalerConfig:
    """The scaler policy from a file; errors name the file and the key (ConfigError)."""
    return load_model(path, ScalerConfig)
