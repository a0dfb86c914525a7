"""The container and deployment recipes, checked as far as this machine allows (no Docker engine).

- docker-compose.yml: ``docker compose config`` parses it when a compose client exists; its
  shape (postgres:16, pg_isready, the migration in docker-entrypoint-initdb.d, the token
  volume) and the files it mounts are checked in any case.
- Dockerfile: its COPY set is staged as a build context, its RUN install line runs against a
  fresh venv, then its CMD starts the server and its HEALTHCHECK command must pass against it.
- deploy/kubernetes.yaml: validated against the Kubernetes schema (kubernetes-validate ships
  the schemas, so this runs offline).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from console.config import load_settings
from console.crypto import Keyring

from support.waiting import wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"LITELLM_MASTER_KEY": "sk-deploy-test-key", "POSTGRES_PASSWORD": "pw",
           "CLAUDE_TOKEN_ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}


def _compose_client() -> list[str] | None:
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        probe = subprocess.run([*candidate, "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return candidate
    return None


# -- docker compose -------------------------------------------------------------------------------

def test_compose_config_parses():
    client = _compose_client()
    if client is None:
        pytest.skip("no compose client here (neither `docker compose` nor `docker-compose` runs)")
    env = {**os.environ, **SECRETS}
    result = subprocess.run([*client, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    missing = {k: v for k, v in env.items() if k not in SECRETS}
    refused = subprocess.run([*client, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                             cwd=ROOT, env=missing, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "LITELLM_MASTER_KEY" in refused.stderr


def test_compose_has_the_seeds_shape_and_its_mounts_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app, db = compose["services"]["claude-console"], compose["services"]["db"]
    assert db["image"] == "postgres:16"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    initdb = [v for v in db["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert len(initdb) == 1 and initdb[0].startswith("./migrations/add_claude_oauth_tokens.sql:")
    assert "oauth_tokens:/app/.litellm" in app["volumes"] and "oauth_tokens" in compose["volumes"]
    for volume in app["volumes"] + db["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_file(), f"{source} is mounted but missing"
    # Both keys are required: compose refuses to start with either unset (${VAR:?...}).
    for name in ("LITELLM_MASTER_KEY", "CLAUDE_TOKEN_ENCRYPTION_KEY"):
        assert re.fullmatch(r"\$\{" + name + r":\?[^}]+\}", app["environment"][name]), name
    assert app["ports"] == ["127.0.0.1:4000:4000"]


def _compose_env(compose: dict) -> dict[str, str]:
    """The app's environment as compose would pass it, with the test secrets filled in."""
    out = {}
    for name, value in compose["services"]["claude-console"]["environment"].items():
        out[name] = re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: SECRETS.get(m.group(1), ""), str(value))
    return out


def test_the_mounted_config_loads_into_database_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = _compose_env(compose)
    settings = load_settings(ROOT / "deploy" / "config.yaml", env=env)
    assert settings.database_enabled and settings.database_url.startswith("postgresql://llmproxy:pw@db:")
    assert settings.master_key == SECRETS["LITELLM_MASTER_KEY"]
    assert Keyring.from_spec(settings.encryption_key).enabled
    assert str(settings.token_path) == "/app/.litellm/claude_tokens.json"


def test_env_example_names_every_secret_and_its_generators_work():
    text = (ROOT / ".env.example").read_text()
    for name in ("LITELLM_MASTER_KEY", "CLAUDE_TOKEN_ENCRYPTION_KEY", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{name}=$", text, re.M), name
    commands = re.findall(r"^#\s+(python -c .+)$", text, re.M)
    assert len(commands) == 3
    outputs = [subprocess.run(shlex.split(c.replace("python", sys.executable, 1)), capture_output=True,
                              text=True, check=True).stdout.strip() for c in commands]
    master, encryption, password = outputs
    assert master.startswith("sk-") and len(master) > 40
    assert Keyring.from_spec(encryption).enabled  # a valid 32-byte key
    assert len(password) >= 24


# -- the Dockerfile -------------------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def _exec_form(args: str) -> list[str]:
    return yaml.safe_load(args)  # a JSON array is YAML too


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dockerfile_is_slim_non_root_with_a_token_volume_and_a_real_healthcheck():
    steps = _dockerfile()
    base = next(args for op, args in steps if op == "FROM")
    assert re.fullmatch(r"python:3\.\d+-slim", base)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [args for op, args in steps if op == "VOLUME"] == ['["/app/.litellm"]']
    health = next(args for op, args in steps if op == "HEALTHCHECK")
    assert "CMD" in health and "health --url" in " ".join(_exec_form(health.split("CMD", 1)[1]))
    cmd = _exec_form(next(args for op, args in steps if op == "CMD"))
    assert cmd[:4] == ["python", "-m", "console", "serve"]


def test_dockerfile_install_and_start_commands_work_in_a_fresh_venv(tmp_path):
    """Stage the COPY set, run the RUN install line, start CMD, pass HEALTHCHECK.

    To stay fast and offline, the fresh venv sees this environment's installed dependencies
    (a .pth file) and installs the project itself with --no-deps from the staged context;
    ``pip check`` then proves every declared dependency is satisfied there.
    """
    pytest.importorskip("hatchling", reason="hatchling (test extras) builds the wheel without network")
    steps = _dockerfile()
    context = tmp_path / "context"
    context.mkdir()
    for op, args in steps:
        if op == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                src = ROOT / source
                assert src.exists(), f"COPY {source}: missing from the repository"
                target = context / source
                if src.is_dir():
                    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(src, target)
    install = next(args for op, args in steps if op == "RUN" and "pip install" in args)
    commands = [c.strip() for c in install.split("&&")]
    assert commands[0] == "python -m venv /opt/venv" and commands[1] == "/opt/venv/bin/pip install ."

    venv = tmp_path / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed",
                          "--no-build-isolation", "--no-index", "."], cwd=context, env=env,
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    for command in commands[2:]:  # e.g. /opt/venv/bin/python -m console --version
        argv = shlex.split(command.replace("/opt/venv", str(venv)))
        ran = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
    where = subprocess.run([str(python), "-c", "import console, os; print(console.__file__); "
                            "print(os.path.isdir(os.path.join(os.path.dirname(console.__file__), 'styles')))"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "True"  # the fresh install, styles included
    check = subprocess.run([str(python), "-m", "pip", "check"], env=env, cwd=tmp_path, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    port = str(_free_port())
    run_env = {**env, "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "HOME": str(tmp_path / "home"),
               "CLAUDE_TOKEN_FILE": str(tmp_path / "litellm" / "claude_tokens.json"),
               "LITELLM_MASTER_KEY": SECRETS["LITELLM_MASTER_KEY"]}
    for name in ("DATABASE_URL", "REDIS_URL", "CONSOLE_CONFIG", "CLAUDE_ACCESS_TOKEN"):
        run_env.pop(name, None)
    cmd = [part if part != "4000" else port for part in _exec_form(next(a for o, a in steps if o == "CMD"))]
    health_args = next(a for o, a in steps if o == "HEALTHCHECK").split("CMD", 1)[1]
    health = [part.replace(":4000/", f":{port}/") for part in _exec_form(health_args)]
    server = subprocess.Popen(cmd, env=run_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        last: list[subprocess.CompletedProcess] = []

        def answered() -> bool:
            last[:] = [subprocess.run(health, env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)]
            return last[0].returncode == 0 or server.poll() is not None

        wait_for_sync(answered, 30.0, what="the image's health check to pass", interval=0.2,
                      show=lambda: f"{last[0].stdout}{last[0].stderr}")
        probe = last[0]
        assert probe.returncode == 0, (probe.stdout, probe.stderr)
        assert "file" in probe.stdout
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()


# -- Kubernetes -------------------------------------------------------------------------------------

def _manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if doc]


def test_kubernetes_manifest_validates_against_the_schema():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extras")
    version = kv.utils.latest_version()
    kinds = []
    for doc in _manifests():
        kv.validate(doc, version, strict=True)  # raises on an unknown field or a wrong type
        kinds.append(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap"} <= set(kinds)
    broken = next(d for d in _manifests() if d["kind"] == "Deployment")
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, version, strict=True)


def test_kubernetes_deployment_shape():
    docs = {d["kind"]: d for d in _manifests()}
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for name in ("DATABASE_URL", "CLAUDE_TOKEN_ENCRYPTION_KEY", "LITELLM_MASTER_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"].startswith("/health")
    assert pod["securityContext"]["runAsNonRoot"] is True
    config_volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert config_volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volume["name"])
    assert env["CONSOLE_CONFIG"]["value"] == f"{mount['mountPath']}/config.yaml"
    # The ConfigMap carries the same config as deploy/config.yaml.
    shipped = yaml.safe_load((ROOT / "deploy" / "config.yaml").read_text())
    assert yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"]) == shipped
    assert docs["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
