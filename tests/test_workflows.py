"""The GitHub workflows in .github/workflows: actionlint (with shellcheck on their `run:` steps)
passes on them, CI runs .ci/run, and a release publishes to PyPI by trusted publishing before it
publishes manifests/server.json to the MCP Registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent  # actionlint and shellcheck come with the dev group


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "actionlint", "-no-color", "-oneline", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])},
    )


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    done = actionlint(*files)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_actionlint_and_shellcheck_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  check:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_context }}\n"
        "      - run: cd $HOME/some dir\n"
    )
    done = actionlint(broken)
    assert done.returncode == 1
    assert "no_such_context" in done.stdout
    assert "SC2086" in done.stdout  # shellcheck's unquoted-variable finding, through actionlint


def test_ci_runs_the_ci_script_with_the_node_the_inspector_wants() -> None:
    ci = workflow("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci[True])  # YAML reads `on` as True
    steps = ci["jobs"]["check"]["steps"]
    assert [step["run"] for step in steps if "run" in step] == ["bash .ci/run"]
    [node] = [step["with"]["node-version"] for step in steps if step.get("uses", "").startswith("actions/setup-node")]
    assert int(node.split(".")[0]) >= 22


def test_a_release_checks_then_publishes_to_pypi_then_to_the_mcp_registry() -> None:
    release = workflow("release.yml")
    assert release[True] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["check"]["uses"] == "./.github/workflows/ci.yml"
    assert (jobs["build"]["needs"], jobs["pypi"]["needs"], jobs["mcp-registry"]["needs"]) == ("check", "build", "pypi")
    build = "\n".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "retab_mcp/__init__.py" in build  # the tag must name the version being built
    assert "uv build" in build
    # Trusted publishing: an OIDC token for this job, and no stored PyPI token anywhere.
    assert release["permissions"] == {"contents": "read"}
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert [s["uses"] for s in jobs["pypi"]["steps"]][-1].startswith("pypa/gh-action-pypi-publish@")
    assert "secrets." not in (WORKFLOWS / "release.yml").read_text()
    registry = "\n".join(step.get("run", "") for step in jobs["mcp-registry"]["steps"])
    assert jobs["mcp-registry"]["permissions"]["id-token"] == "write"
    assert "mcp-publisher login github-oidc" in registry
    assert "cd manifests && ../mcp-publisher publish" in registry  # manifests/server.json
