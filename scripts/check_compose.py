#!/usr/bin/env python3
"""Checks compose.yaml against the README and .env.example, and that the
Dockerfile copies every folder the Swift manifest names into the build.

Run from anywhere: python3 scripts/check_compose.py
Prints one line per problem and exits 1 if there is any; prints a summary
line and exits 0 otherwise. Needs PyYAML (Debian's python3-yaml). When
`docker-compose` (v1) or `docker compose` (v2) is available, it also has
Compose itself validate the file with .env.example as its environment.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("check_compose: PyYAML is missing (apt-get install python3-yaml)")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(ROOT, "compose.yaml")
README = os.path.join(ROOT, "README.md")
ENV_EXAMPLE = os.path.join(ROOT, ".env.example")

EXPECTED_SERVICES = {"postgres", "redis", "migrate", "gateway-1", "gateway-2", "notifier", "mailpit", "nginx"}
PARLEY_SERVICES = ["migrate", "gateway-1", "gateway-2", "notifier"]
GATEWAYS = ["gateway-1", "gateway-2"]
MAILPIT_UI_PORT = "8025"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; $$ is a literal $.
INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def readme_variables(text):
    """The backticked names in the first column of the README's configuration table."""
    names = set()
    in_section = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_section = line.strip() == "## Configuration"
            continue
        if not in_section or not line.startswith("|"):
            continue
        cells = line.strip().strip("|").split("|")
        if not cells:
            continue
        names.update(re.findall(r"`(PARLEY_[A-Z0-9_]+)`", cells[0]))
    return names


def env_example_variables(text):
    """Names assigned in .env.example (NAME=value lines, comments ignored)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match:
            names.add(match.group(1))
    return names


def interpolated_variables(text):
    """Every variable compose.yaml interpolates (comments skipped, $$ ignored)."""
    names = set()
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in INTERPOLATION.finditer(line):
            name = match.group(1) or match.group(2)
            if name:
                names.add(name)
    return names


def environment_of(service):
    """A service's environment as a dict (mapping or list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        result = {}
        for item in env:
            name, _, value = str(item).partition("=")
            result[name] = value if "=" in str(item) else None
        return result
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def published_ports(service):
    """(host part, container port) for each published port, short or long syntax."""
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            result.append((str(port.get("published", "")), str(port.get("target", ""))))
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 1)
        if len(parts) == 1:
            result.append(("", parts[0]))
        else:
            result.append((parts[0], parts[1]))
    return result


def compose_command():
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def run_compose_config(problems):
    command = compose_command()
    if command is None:
        return "compose config: skipped (neither docker-compose nor docker compose found)"
    # A private copy, so that a developer's own .env never takes part.
    with tempfile.TemporaryDirectory(prefix="check-compose.") as work:
        shutil.copy(COMPOSE, os.path.join(work, "compose.yaml"))
        shutil.copy(ENV_EXAMPLE, os.path.join(work, ".env"))
        os.makedirs(os.path.join(work, "deploy", "nginx"))
        shutil.copy(os.path.join(ROOT, "deploy", "nginx", "parley.conf.template"), os.path.join(work, "deploy", "nginx"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "POSTGRES_", "REDIS_", "COMPOSE_"))}
        args = command + ["-f", "compose.yaml", "--env-file", ".env", "config", "-q"]
        result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            message = " ".join((result.stderr or result.stdout).split()) or f"exit code {result.returncode}"
            problems.append(f"compose.yaml: `{' '.join(command)} config` with .env.example fails: {message}")
        # Every secret must be required: without an .env, Compose must refuse the file.
        os.remove(os.path.join(work, ".env"))
        with open(os.path.join(work, ".env"), "w") as empty:
            empty.write("")
        bare = subprocess.run(command + ["-f", "compose.yaml", "config", "-q"], cwd=work, env=env, capture_output=True, text=True)
        if bare.returncode == 0:
            problems.append(f"compose.yaml: `{' '.join(command)} config` succeeds without any .env: the secrets are not required")
    return f"compose config: {' '.join(command)} accepted it"


def dockerfile_problems():
    """Folders Package.swift needs (Sources/, Tests/ and every custom
    `path:`) that the Dockerfile's build stage does not COPY: SwiftPM refuses
    a manifest whose target folders are missing, so the image would not build."""
    with open(os.path.join(ROOT, "Package.swift")) as file:
        manifest = file.read()
    needed = {"Sources", "Tests"} | {path.split("/")[0] for path in re.findall(r'\bpath:\s*"([^"]+)"', manifest)}
    with open(os.path.join(ROOT, "Dockerfile")) as file:
        copied = set()
        for line in file:
            words = line.split()
            if len(words) >= 3 and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
                copied.update(w.rstrip("/").removeprefix("./") for w in words[1:-1] if not w.startswith("--"))
    return [f"Dockerfile: the build stage does not COPY {folder}/, which Package.swift needs" for folder in sorted(needed - copied)]


def main():
    problems = dockerfile_problems()
    try:
        with open(COMPOSE) as f:
            compose_text = f.read()
        compose = yaml.safe_load(compose_text) or {}
    except (OSError, yaml.YAMLError) as error:
        print(f"compose.yaml: cannot be read: {error}")
        return 1
    with open(README) as f:
        documented = readme_variables(f.read())
    if not documented:
        problems.append("README.md: no PARLEY_ variables found in the table of the Configuration section")
    try:
        with open(ENV_EXAMPLE) as f:
            example = env_example_variables(f.read())
    except OSError:
        problems.append(".env.example: missing")
        example = set()

    services = compose.get("services") or {}
    names = set(services)
    for name in sorted(EXPECTED_SERVICES - names):
        problems.append(f"compose.yaml: service {name} is missing")
    for name in sorted(names - EXPECTED_SERVICES):
        problems.append(f"compose.yaml: unexpected service {name} (expected exactly {', '.join(sorted(EXPECTED_SERVICES))})")

    for name in PARLEY_SERVICES:
        if name not in services:
            continue
        for variable in sorted(environment_of(services[name])):
            if variable.startswith("PARLEY_") and variable not in documented:
                problems.append(f"compose.yaml: {name} sets {variable}, which the README's configuration table does not list")

    if "notifier" in services:
        env = environment_of(services["notifier"])
        if "PARLEY_JWT_SECRET" in env:
            problems.append("compose.yaml: notifier is given PARLEY_JWT_SECRET (it must get PARLEY_MAIL_KEY only)")
        if not env.get("PARLEY_MAIL_KEY"):
            problems.append("compose.yaml: notifier has no PARLEY_MAIL_KEY")

    for name in GATEWAYS:
        if name not in services:
            continue
        env = environment_of(services[name])
        if env.get("PARLEY_HTTP_HOST") != "0.0.0.0":
            problems.append(f"compose.yaml: {name} must set PARLEY_HTTP_HOST=0.0.0.0 (got {env.get('PARLEY_HTTP_HOST')!r})")
        if not env.get("PARLEY_TRUSTED_PROXIES"):
            problems.append(f"compose.yaml: {name} has no PARLEY_TRUSTED_PROXIES (nginx's X-Forwarded-For would be ignored)")
        if not env.get("PARLEY_INSTANCE_ID"):
            problems.append(f"compose.yaml: {name} has no PARLEY_INSTANCE_ID")
    ids = [environment_of(services[g]).get("PARLEY_INSTANCE_ID") for g in GATEWAYS if g in services]
    if len(ids) == 2 and ids[0] and ids[0] == ids[1]:
        problems.append("compose.yaml: both gateways have the same PARLEY_INSTANCE_ID")

    for name in sorted(names):
        ports = published_ports(services[name])
        if not ports:
            continue
        if name == "nginx":
            continue
        if name == "mailpit":
            for host, target in ports:
                if target != MAILPIT_UI_PORT:
                    problems.append(f"compose.yaml: mailpit publishes container port {target}; only its web UI ({MAILPIT_UI_PORT}) may be published")
            continue
        problems.append(f"compose.yaml: {name} publishes ports; only nginx (and mailpit's web UI) may")
    if "nginx" in services and not published_ports(services["nginx"]):
        problems.append("compose.yaml: nginx publishes no port")

    for variable in sorted(interpolated_variables(compose_text) - example):
        problems.append(f"compose.yaml: interpolates ${{{variable}}}, which .env.example does not set")

    summary = run_compose_config(problems)

    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"check_compose: compose.yaml is consistent ({len(services)} services; {summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
