"""The scaler sidecar: Alertmanager webhooks in, safe scaling actions out.

Data flows one way: webhook (validate) -> policy (pure decisions) -> executor (cooldowns, dedupe,
rate limit, retries) -> backends (the only code that touches the outside) -> audit log + metrics.
"""
