"""The scaler's shared data: alerts in, observations read, decisions out, and their vocabularies.

The bottom floor of the scaler: the webhook parser, the policy, the executor and every backend
import these types; this module imports nothing of the scaler, so no backend depends on the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]
#: Why a decision exists: an alert fired or resolved, or a pending reverse came due.
Trigger = Literal["firing", "resolved", "reverse"]
#: act: carry it out; skipped: see ``reason``; scheduled: a reverse waits out its stabilisation window.
Outcome = Literal["act", "skipped", "scheduled"]
#: What became of an act decision ('' while it is not one).
Result = Literal["", "pending", "success", "failure", "dry_run"]
#: Every reason a decision is skipped (the label values of agentwatch_scaler_skipped_total).
SkipReason = Literal["target_unresolved", "target_not_allowed", "action_not_supported", "duplicate", "cooldown",
                     "no_change", "observe_failed", "bounds", "host_limit", "lower_priority", "rate_limit"]


@dataclass(frozen=True)
class Alert:
    """One alert of an Alertmanager webhook, reduced to what the policy reads."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str = ""
    ends_at: str = ""
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class NodeRoom:
    """One node of a cluster as the scaler sees it: what it reports and what its tasks claim."""

    hostname: str
    #: Memory the node reports (Swarm: Description.Resources.MemoryBytes).
    memory_bytes: int
    #: Memory claimed by every task meant to run there (each its limit or reservation, the larger).
    claimed_bytes: int
    #: Tasks of the target's service meant to run there.
    tasks: int = 0
    #: Ready, active, and allowed by the service's placement constraints.
    eligible: bool = True
    #: The service's cap of tasks per node (Placement.MaxReplicas); None: no cap.
    max_tasks: int | None = None


@dataclass(frozen=True)
class Observation:
    """What a backend saw on a target just before deciding; None where it does not apply."""

    replicas: int | None = None
    #: The per-container memory limit (largest across a service's containers); 0 means unlimited.
    memory_bytes: int | None = None
    #: Sum of the memory limits of all the target's containers.
    memory_total_bytes: int | None = None
    concurrency: int | None = None
    draining: bool | None = None
    #: The cluster's nodes (Swarm services): the policy never places more on a node than it holds.
    nodes: tuple[NodeRoom, ...] | None = None
    #: Memory one more task claims on a node (its limit or reservation, the larger).
    task_bytes: int | None = None


@dataclass
class Decision:
    """One rule applied to one alert (or one pending reverse): what to do, or why not.

    The policy fills the decision fields; the executor fills the timing and result fields.
    """

    rule: str
    action: str
    target: str
    priority: int
    alertname: str
    fingerprint: str
    starts_at: str
    trigger: Trigger
    dedupe_key: str
    outcome: Outcome = "act"
    reason: SkipReason | Literal[""] = ""
    detail: str = ""
    current: float | None = None
    desired: float | None = None
    baseline: float | None = None
    message: str = ""
    mode: str = ""
    result: Result = ""
    error: str = ""
    attempts: int = 0
    received_at: float = 0.0
    decided_at: float = 0.0
    finished_at: float = 0.0
    #: Given by the caller (the executor's id factory), so the policy stays deterministic.
    id: str = field(kw_only=True)

    def skip(self, reason: SkipReason, detail: str = "") -> None:
        self.outcome, self.reason, self.detail = "skipped", reason, detail

    def to_json(self) -> dict[str, Any]:
        # Every field is a plain value: read them directly (``asdict`` deep-copies each one, the
        # largest cost of a decision in a webhook burst).
        return {name: v for name in _DECISION_FIELDS if (v := getattr(self, name)) not in ("", None)}


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))
