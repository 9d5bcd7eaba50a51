"""The README stays true to the code: its configuration table, error codes and the commands CI runs."""

from __future__ import annotations

from pathlib import Path

from retab_mcp.config import ENV_VARS
from retab_mcp.errors import ErrorCode

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_every_environment_variable_is_documented() -> None:
    for var in ENV_VARS:
        assert f"| `{var.name}` |" in README, var.name


def test_every_error_code_is_documented() -> None:
    for code in ErrorCode:
        assert f"| `{code}` |" in README, code


def test_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in quick_start.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert "--sandbox" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()
