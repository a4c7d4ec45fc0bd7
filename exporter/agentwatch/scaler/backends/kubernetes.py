"""Kubernetes Deployments: replicas through the scale subresource, memory through the pod template.

Uses the official ``kubernetes`` client (``pip install 'agentwatch[kubernetes]'``), imported only
when a ``kubernetes_deployment`` target is first used, and blocking, so its calls run in a small
thread pool off the event loop. In a cluster it authenticates as its service account; outside,
with a kubeconfig. A resize sets the container's memory limit and its request to the same value:
the Kubernetes scheduler places pods by their requests, so it then never puts a pod on a node that
cannot hold its limit. The RBAC the scaler needs is in deploy/kubernetes/scaler.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agentwatch.scaler.backends import ActionError, desired
from agentwatch.scaler.config import KubernetesBackendConfig, KubernetesDeploymentTarget
from agentwatch.scaler.model import Decision, Observation

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
#: Merges the containers list by name: only the named container's resources change.
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_SUFFIXES = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6,
             "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5, "E": 1000**6}


def memory_bytes(quantity: Any) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1G``, ``1e9``, ``2048``) in bytes; 0 when unset.

    Written here rather than imported so a malformed value is one clear ActionError.
    """
    if quantity in (None, ""):
        return 0
    text = str(quantity).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, 1
    try:
        return int(float(number) * scale)
    except ValueError:
        raise ActionError(f"cannot read the memory quantity {text[:40]!r}") from None


def _reason(exc: BaseException) -> str:
    """An API or connection error as one line, without headers or bodies that could hold secrets."""
    status = getattr(exc, "status", None)
    if status:
        words = {401: "unauthorized (check the token)", 403: "forbidden (check the scaler's RBAC)",
                 404: "not found", 409: "conflict", 422: "rejected as invalid"}
        return f"Kubernetes API {status}: {words.get(status, getattr(exc, 'reason', '') or 'error')}"
    return f"Kubernetes API unreachable: {type(exc).__name__}"


class KubernetesBackend:
    """kubernetes_deployment targets, through one API client made on first use."""

    kind = "kubernetes"

    def __init__(self, config: KubernetesBackendConfig) -> None:
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="scaler-k8s")
        self._apps: Any = None
        self._lock = threading.Lock()

    def apps(self) -> Any:
        """The AppsV1Api, configured from the kubeconfig or the in-cluster service account."""
        with self._lock:
            if self._apps is None:
                try:
                    from kubernetes import client, config
                except ImportError:
                    raise ActionError("the kubernetes client is not installed: "
                                      "pip install 'agentwatch[kubernetes]'") from None
                configuration = client.Configuration()
                try:
                    if self.config.kubeconfig:
                        config.load_kube_config(config_file=self.config.kubeconfig, context=self.config.context,
                                                client_configuration=configuration)
                    else:
                        config.load_incluster_config(client_configuration=configuration)
                except Exception as exc:  # a missing file, a bad context, not in a cluster
                    where = self.config.kubeconfig or "the in-cluster service account"
                    raise ActionError(f"cannot load Kubernetes credentials from {where}: "
                                      f"{type(exc).__name__}") from None
                self._apps = client.AppsV1Api(client.ApiClient(configuration))
            return self._apps

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except ActionError:
            raise
        except Exception as exc:  # ApiException, urllib3 errors: never a dead scaler
            raise ActionError(_reason(exc)) from None

    def _read(self, target: KubernetesDeploymentTarget) -> Any:
        return self.apps().read_namespaced_deployment(target.deployment, target.namespace,
                                                      _request_timeout=self.config.timeout_seconds)

    def _container(self, target: KubernetesDeploymentTarget, deployment: Any) -> Any:
        containers = list(deployment.spec.template.spec.containers or [])
        if not containers:
            raise ActionError(f"{target.namespace}/{target.deployment} has no container")
        if target.container is None:
            return containers[0]
        for container in containers:
            if container.name == target.container:
                return container
        raise ActionError(f"{target.namespace}/{target.deployment} has no container {target.container!r} "
                          f"(it has {', '.join(c.name for c in containers)})")

    def _observe(self, target: KubernetesDeploymentTarget) -> Observation:
        deployment = self._read(target)
        replicas = int(deployment.spec.replicas if deployment.spec.replicas is not None else 1)
        resources = self._container(target, deployment).resources
        limits = (resources.limits if resources is not None else None) or {}
        memory = memory_bytes(limits.get("memory"))
        return Observation(replicas=replicas, memory_bytes=memory, memory_total_bytes=memory * replicas)

    def _scale(self, target: KubernetesDeploymentTarget, replicas: int) -> str:
        self.apps().patch_namespaced_deployment_scale(
            target.deployment, target.namespace, {"spec": {"replicas": replicas}},
            _content_type=MERGE_PATCH, _request_timeout=self.config.timeout_seconds)
        return f"replicas {replicas}"

    def _resize(self, target: KubernetesDeploymentTarget, limit: int) -> str:
        name = self._container(target, self._read(target)).name
        memory = {"memory": str(limit)}
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": name, "resources": {"limits": memory, "requests": memory}}]}}}}
        self.apps().patch_namespaced_deployment(target.deployment, target.namespace, patch,
                                                _content_type=STRATEGIC_MERGE_PATCH,
                                                _request_timeout=self.config.timeout_seconds)
        return f"memory limit and request {limit} bytes on container {name}"

    async def observe(self, name: str, target: Any) -> Observation:
        return await self._run(self._observe, target)

    async def execute(self, decision: Decision, target: Any) -> str:
        if decision.action in ("scale_up", "scale_down"):
            return await self._run(self._scale, target, desired(decision))
        if decision.action == "resize_memory":
            return await self._run(self._resize, target, desired(decision))
        raise ActionError(f"the kubernetes backend cannot {decision.action}")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._apps is not None:
            with contextlib.suppress(Exception):
                self._apps.api_client.close()
