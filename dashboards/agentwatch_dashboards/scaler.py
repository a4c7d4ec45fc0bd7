"""Scaler: what the self-healing loop decided and did: actions by result, skips by reason, cooldowns, latency."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from agentwatch_dashboards.panels import (
    RED,
    Kit,
    Look,
    Query,
    Row,
    board,
    flat,
    increase,
    job_and_instance,
    quantile,
    query_variable,
    rising,
    sel,
)
from agentwatch_dashboards.thresholds import Thresholds

UID = "agentwatch-scaler"
ACTION = 'action=~"$action"'


def build(t: Thresholds) -> Dashboard:
    kit = Kit(t)
    decisions = Row("Decisions and actions", [
        kit.timeseries(Look(
            "Actions by result", "Actions executed per interval, by action and result: success, failure (after "
            "its retries) or dry_run (decided, not done).", "short",
            [Query(f"sum by (action, result) ({increase('agentwatch_scaler_actions_total', ACTION)})",
                   "{{action}} {{result}}")], rising(1), "AgentwatchScalerActionsFailing", width=12),
            stack=True, bars=True),
        kit.timeseries(Look(
            "Skips by reason", "Decisions the policy skipped per interval: cooldown, duplicate, rate_limit, bounds, "
            "host_limit, lower_priority, no_change, observe_failed, target_unresolved, target_not_allowed, "
            "action_not_supported.", "short",
            [Query(f"sum by (reason) ({increase('agentwatch_scaler_skipped_total')})", "{{reason}}")],
            width=12), stack=True, bars=True),
        kit.timeseries(Look(
            "Decisions by outcome", "What the policy made of each alert, by action and outcome.", "short",
            [Query(f"sum by (action, outcome) ({increase('agentwatch_scaler_decisions_total', ACTION)})",
                   "{{action}} {{outcome}}")], width=12), stack=True, bars=True),
        kit.timeseries(Look(
            "Webhooks by result", "Alertmanager webhooks received per interval: accepted, unauthorized (token), "
            "invalid, too_large.", "short",
            [Query(f"sum by (result) ({increase('agentwatch_scaler_webhooks_total')})", "{{result}}")],
            width=12), stack=True, bars=True),
    ])
    timing = Row("Cooldowns and latency", [
        kit.bars(Look(
            "Cooldowns", "Seconds left before the scaler may act again on a target with an action.", "s",
            [Query(sel("agentwatch_scaler_cooldown_remaining_seconds", ACTION, 'target=~"$target"'),
                   "{{target}} {{action}}")], flat(), width=8, minimum=0, no_value="none cooling down")),
        kit.timeseries(Look(
            "Decision latency p50 / p99", "Time from webhook receipt to decision (waiting for the decision lock "
            "included).", "s",
            [Query(quantile(0.5, "agentwatch_scaler_decision_latency_seconds", ""), "p50 {{instance}}"),
             Query(quantile(0.99, "agentwatch_scaler_decision_latency_seconds", ""), "p99 {{instance}}")],
            width=8)),
        kit.timeseries(Look(
            "Action duration p95", "Time an action took, its retries included.", "s",
            [Query(quantile(0.95, "agentwatch_scaler_action_duration_seconds", "action", ACTION), "{{action}}")],
            width=8)),
        kit.timeseries(Look(
            "Retries and persistence errors", "Failed attempts retried after a backoff, and state or audit file "
            "problems (state_corrupt: set aside and started empty).", "short",
            [Query(f"sum by (action) ({increase('agentwatch_scaler_action_retries_total', ACTION)})",
                   "retry {{action}}"),
             Query(f"sum by (reason) ({increase('agentwatch_scaler_persistence_errors_total')})", "{{reason}}")],
            flat(RED), width=24, height=6), bars=True),
    ])
    metric = "agentwatch_scaler_decision_latency_seconds_count"
    return board(t, UID, "agentwatch: scaler",
                 "The scaler's self-healing loop: webhooks, decisions, actions by result, skips by reason, "
                 "cooldowns and latency.",
                 ["scaler"],
                 [*job_and_instance(metric),
                  query_variable("action", "Action",
                                 'label_values(agentwatch_scaler_decisions_total{job=~"$job", instance=~"$instance"}, '
                                 "action)", ".*", "What the scaler does: set_concurrency, drain, scale_up, ..."),
                  query_variable("target", "Target",
                                 'label_values(agentwatch_scaler_cooldown_remaining_seconds{job=~"$job", '
                                 'instance=~"$instance"}, target)', ".*", "A target of the scaler's allowlist.")],
                 [decisions, timing])
