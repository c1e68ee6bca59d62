#!/usr/bin/env python3
"""Checks the deployment files in deploy/ without running them (no Docker or Kubernetes
here): every file parses as YAML; docker-compose.yml's services each have an image or a
build, a command list of strings, and name only NATS servers that exist in --cluster;
every Kubernetes object has apiVersion, kind and metadata.name, each workload's selector
matches its pod template's labels, and every Service selects some workload. With Docker
Compose available it also runs `docker compose config -q`."""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent / "deploy"
errors = []


def check(cond, message):
    if not cond:
        errors.append(message)


compose_path = root / "docker-compose.yml"
compose = yaml.safe_load(compose_path.read_text())
services = compose.get("services", {})
check(len(services) == 6, f"{compose_path}: 6 services (3 NATS, 3 matchers), got {len(services)}")
for name, svc in services.items():
    check("image" in svc or "build" in svc, f"{name}: no image or build")
    cmd = svc.get("command", [])
    check(isinstance(cmd, list) and all(isinstance(c, str) for c in cmd), f"{name}: command must be a list of strings")
    if "--cluster" in cmd and name.startswith("matcher"):
        urls = cmd[cmd.index("--cluster") + 1].split(",")
        for u in urls:
            host = u.removeprefix("nats://").split(":")[0]
            check(host in services, f"{name}: --cluster names {host}, not a service")
        check("--addr" in cmd, f"{name}: listens on its default loopback address, unreachable from outside the container")
    if "--routes" in cmd:
        for u in cmd[cmd.index("--routes") + 1].split(","):
            host = u.removeprefix("nats://").split(":")[0]
            check(host in services, f"{name}: route to {host}, not a service")

workloads = []
services_k8s = []
for path in sorted((root / "kubernetes").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        where = f"{path.name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        for key in ("apiVersion", "kind", "metadata"):
            check(key in doc, f"{where}: no {key}")
        check("name" in doc.get("metadata", {}), f"{where}: no metadata.name")
        kind = doc.get("kind")
        if kind in ("Deployment", "StatefulSet"):
            spec = doc["spec"]
            labels = spec["template"]["metadata"]["labels"]
            selector = spec["selector"]["matchLabels"]
            check(all(labels.get(k) == v for k, v in selector.items()), f"{where}: selector does not match the pod labels")
            for c in spec["template"]["spec"]["containers"]:
                check(all(isinstance(a, str) for a in c.get("args", [])), f"{where}: args must be strings")
            workloads.append(labels)
        elif kind == "Service":
            services_k8s.append((where, doc["spec"]["selector"]))
        else:
            errors.append(f"{where}: unexpected kind")
for where, selector in services_k8s:
    check(any(all(l.get(k) == v for k, v in selector.items()) for l in workloads), f"{where}: selects no workload")

has_compose = shutil.which("docker") and subprocess.run(
    ["docker", "compose", "version"], capture_output=True
).returncode == 0
if has_compose:
    r = subprocess.run(["docker", "compose", "-f", str(compose_path), "config", "-q"], capture_output=True, text=True)
    check(r.returncode == 0, f"docker compose config: {r.stderr.strip()}")

for e in errors:
    print(f"check-deploy: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"check-deploy: {compose_path.name} and {len(workloads)} workloads, {len(services_k8s)} services: ok")
