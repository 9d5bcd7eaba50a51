"""The Kubernetes manifests and the Dockerfile: valid against the Kubernetes schemas (offline,
with kubernetes-validate), and true to the server: the container's flags parse with the real
CLI, the probes hit the real routes, every variable is one the server reads, the image's
`uv sync` steps succeed from the lock file, every manifest names one namespace, and the image
the Deployment names is the one a release publishes."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from retab_mcp import __version__
from retab_mcp.cli import _parser
from retab_mcp.config import ENV_VARS, Settings
from retab_mcp.http import HEALTH_PATH, READY_PATH
from tests.support import tool_env

ROOT = Path(__file__).parent.parent
MANIFESTS = sorted((ROOT / "manifests" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSIONS = ["1.31.0", "1.37.0"]


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in documents() if doc["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_against_the_kubernetes_schema(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_set_is_complete() -> None:
    kinds = {doc["kind"] for doc in documents()}
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds


def test_container_flags_and_probes_match_the_server() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = _parser().parse_args(container["args"])
    assert (args.transport, args.host) == ("http", "0.0.0.0")
    [port] = container["ports"]
    assert port["containerPort"] == args.port
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": port["name"]}
    known = {var.name for var in ENV_VARS}
    assert {env["name"] for env in container["env"]} <= known
    grace = next(int(env["value"]) for env in container["env"] if env["name"] == "RETAB_MCP_SHUTDOWN_GRACE")
    assert pod["terminationGracePeriodSeconds"] > grace + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Every call in flight at SIGTERM can finish: the drain is no shorter than a call's budget.
    budget = next((float(env["value"]) for env in container["env"] if env["name"] == "RETAB_MCP_CALL_TIMEOUT"), None)
    assert grace >= (budget or Settings().call_timeout)
    assert Settings().shutdown_grace >= Settings().call_timeout
    # One worker per pod: replicas are the scaling unit, each with its own CPU limit and probes.
    workers = next((env["value"] for env in container["env"] if env["name"] == "RETAB_MCP_WORKERS"), "1")
    assert (args.workers, workers) == (None, "1")


def test_hardening_and_scale_out() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    secrets = {env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"] if "valueFrom" in env}
    assert secrets == {by_kind("Secret")["metadata"]["name"]}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service")["spec"]["selector"].items() <= labels.items()
    hpa = by_kind("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2


def test_every_manifest_names_the_one_namespace_the_set_creates() -> None:
    """Applied into whatever namespace the context has, the set would split or land in `default`."""
    namespace = by_kind("Namespace")["metadata"]["name"]
    others = [doc for doc in documents() if doc["kind"] != "Namespace"]
    assert others
    assert {doc["metadata"].get("namespace") for doc in others} == {namespace}
    # The Service's in-cluster names, as the DNS-rebinding protection must accept them.
    [container] = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    hosts = next(env["value"] for env in container["env"] if env["name"] == "RETAB_MCP_ALLOWED_HOSTS").split(",")
    service = by_kind("Service")["metadata"]["name"]
    assert {f"{service}.{namespace}.svc:*", f"{service}.{namespace}.svc.cluster.local:*"} <= set(hosts)
    assert [h for h in hosts if ".svc" in h and f".{namespace}.svc" not in h] == []
    # The Secret is made by hand, from the example's command: in the same namespace.
    assert f"--namespace {namespace}" in (ROOT / "manifests" / "kubernetes" / "secret.example.yaml").read_text()


def test_the_deployments_image_is_the_one_a_release_publishes() -> None:
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    job = release["jobs"]["image"]
    assert job["needs"] == "build"  # the job that checks that the tag names __version__
    assert job["permissions"]["packages"] == "write"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'tag="$IMAGE:${GITHUB_REF_NAME#v}"' in script  # tag vX.Y.Z: IMAGE:X.Y.Z
    assert 'docker build --tag "$tag" .' in script  # from this repository's Dockerfile
    assert 'docker push "$tag"' in script
    [container] = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{job['env']['IMAGE']}:{__version__}"


def dockerfile_lines(prefix: str) -> list[str]:
    return [
        line[len(prefix) :].strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith(prefix)
    ]


def test_the_image_command_is_the_servers_own() -> None:
    [entrypoint] = dockerfile_lines("ENTRYPOINT ")
    [cmd] = dockerfile_lines("CMD ")
    assert yaml.safe_load(entrypoint) == ["retab-mcp"]
    args = _parser().parse_args(yaml.safe_load(cmd))
    assert (args.transport, args.port) == ("http", 8000)


def test_the_dockerfiles_uv_steps_build_from_the_lock_file(tmp_path: Path) -> None:
    """The build cannot run here (no Docker engine); its uv steps can, on a copy of the context."""
    steps = [shlex.split(line) for line in dockerfile_lines("RUN ") if line.startswith("uv ")]
    assert steps
    assert all("--locked" in step for step in steps)
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {k: v for k, v in tool_env().items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"))}
    env |= {"UV_COMPILE_BYTECODE": "1", "UV_LINK_MODE": "copy"}
    for step in steps:
        if "--no-install-project" not in step:  # the second step comes after `COPY retab_mcp`
            shutil.copytree(ROOT / "retab_mcp", tmp_path / "retab_mcp", dirs_exist_ok=True)
        done = subprocess.run(step, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    shutil.rmtree(tmp_path / "retab_mcp")  # the image keeps only the environment
    help_text = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "retab-mcp"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--transport" in help_text
    installed = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "python"), "-c", "import pytest"], capture_output=True, timeout=60
    )
    assert installed.returncode != 0, "test-only dependencies ended up in the image"
