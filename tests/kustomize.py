"""Render a kustomize overlay in Python, for offline checks (no kubectl here).

Supports the subset the repository's kustomizations use, and refuses any other field, so nothing
is silently ignored: ``resources`` (files and directories), ``namespace``, ``labels`` (pairs,
``includeTemplates``), ``images`` (``newName``/``newTag``), ``replicas`` and ``patches`` given as
inline JSON 6902 operations with a ``target`` of kind and optional name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

Resource = dict[str, Any]


class UnsupportedKustomization(ValueError):
    pass


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def render(directory: Path) -> list[Resource]:
    """The resources ``kubectl kustomize directory`` would print (for the supported subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise UnsupportedKustomization(f"{directory}: {', '.join(sorted(unknown))}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources.extend(render(path) if path.is_dir() else load_documents(path))
    for label_set in kustomization.get("labels", []):
        if label_set.get("includeSelectors"):
            raise UnsupportedKustomization("labels.includeSelectors")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
            if label_set.get("includeTemplates") and resource["kind"] in WORKLOADS:
                template = resource["spec"]["template"].setdefault("metadata", {})
                template.setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        for container in _containers(resources):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for replica in kustomization.get("replicas", []):
        matched = [r for r in resources if r["kind"] in WORKLOADS and r["metadata"]["name"] == replica["name"]]
        if not matched:
            raise UnsupportedKustomization(f"replicas: no workload {replica['name']}")
        for resource in matched:
            resource["spec"]["replicas"] = replica["count"]
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        if set(target) - {"kind", "name"}:
            raise UnsupportedKustomization(f"patch target {target}")
        matched = [r for r in resources if r["kind"] == target["kind"]
                   and target.get("name", r["metadata"]["name"]) == r["metadata"]["name"]]
        if not matched:
            raise UnsupportedKustomization(f"patch target {target} matches nothing")
        for resource in matched:
            for operation in yaml.safe_load(patch["patch"]):
                apply_operation(resource, operation)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return copy.deepcopy(resources)


def _containers(resources: list[Resource]) -> list[dict[str, Any]]:
    return [container for r in resources if r["kind"] in WORKLOADS
            for container in r["spec"]["template"]["spec"].get("containers", [])]


def apply_operation(document: Any, operation: dict[str, Any]) -> None:
    """One JSON Patch (RFC 6902) operation: add, replace or remove."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].lstrip("/").split("/")]
    parent = document
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    op = operation["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        elif op == "remove":
            del parent[index]
        else:
            raise UnsupportedKustomization(f"patch op {op}")
        return
    if op in ("replace", "remove") and last not in parent:
        raise UnsupportedKustomization(f"patch {op} of a missing {operation['path']}")
    if op in ("add", "replace"):
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    else:
        raise UnsupportedKustomization(f"patch op {op}")
