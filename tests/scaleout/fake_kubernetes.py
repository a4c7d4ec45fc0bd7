"""A fake Kubernetes API server (aiohttp, loopback): the few endpoints the scaler's backend calls.

No real API server can run here (no kubelet, no etcd, no images), so the Kubernetes backend is
tested against this: the official client makes its real HTTP requests (auth header, paths, patch
content types, JSON bodies), and this server answers them the way the API server does for
Deployments and their scale subresource. Bearer-token auth, 404 with a Status body, and a
per-deployment 403 (a scaler whose RBAC does not name it) are the faults it can produce.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

TOKEN = "fake-kubernetes-token-0123456789"
BASE = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def deployment(name: str, namespace: str, replicas: int, *containers: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": list(containers)}}},
            "status": {"replicas": replicas}}


def container(name: str, memory: str | None = None) -> dict[str, Any]:
    resources = {"limits": {"memory": memory}, "requests": {"memory": memory}} if memory else {}
    return {"name": name, "image": "agentwatch:0.1.0", "resources": resources}


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code}, status=code)


class FakeKubernetes:
    """Deployments by (namespace, name); ``requests`` records (method, path, content type, body)."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.forbidden: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str, str, Any]] = []
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get(BASE, self.get)
        self.app.router.add_patch(BASE, self.patch)
        self.app.router.add_patch(BASE + "/scale", self.patch_scale)

    def add(self, body: dict[str, Any]) -> None:
        self.deployments[(body["metadata"]["namespace"], body["metadata"]["name"])] = body

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, request.content_type, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized", "Unauthorized")
        key = (request.match_info.get("namespace", ""), request.match_info.get("name", ""))
        if key in self.forbidden:
            return status(403, "Forbidden", f'deployments.apps "{key[1]}" is forbidden: User cannot patch')
        if key not in self.deployments:
            return status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
        return await handler(request)

    def _found(self, request: web.Request) -> dict[str, Any]:
        return self.deployments[(request.match_info["namespace"], request.match_info["name"])]

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._found(request))

    async def patch_scale(self, request: web.Request) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return status(415, "UnsupportedMediaType", f"unexpected {request.content_type}")
        found = self._found(request)
        found["spec"]["replicas"] = int((await request.json())["spec"]["replicas"])
        meta = found["metadata"]
        return web.json_response({"apiVersion": "autoscaling/v1", "kind": "Scale",
                                  "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                                  "spec": {"replicas": found["spec"]["replicas"]},
                                  "status": {"replicas": found["spec"]["replicas"]}})

    async def patch(self, request: web.Request) -> web.Response:
        """A strategic merge patch of the pod template's containers (merged by name, as the API does)."""
        if request.content_type != "application/strategic-merge-patch+json":
            return status(415, "UnsupportedMediaType", f"unexpected {request.content_type}")
        found = self._found(request)
        patch = (await request.json())["spec"]["template"]["spec"]["containers"]
        containers = found["spec"]["template"]["spec"]["containers"]
        for change in patch:
            current = next((c for c in containers if c["name"] == change["name"]), None)
            if current is None:
                return status(422, "Invalid", f"no container {change['name']}")
            for kind, values in change.get("resources", {}).items():
                current.setdefault("resources", {}).setdefault(kind, {}).update(values)
        return web.json_response(copy.deepcopy(found))


def kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    """A kubeconfig naming the fake server and a bearer token (the scaler's, out of a cluster)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "scaler", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "scaler"}}],
    }))
    return path
