"""The README stays true to the code: its configuration table, error codes and the commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from retab_mcp.config import ENV_VARS
from retab_mcp.endpoints import select
from retab_mcp.errors import ErrorCode

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
CLIENTS_DOC = (ROOT / "docs" / "clients.md").read_text()


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


def test_commands_of_the_unpublished_package_are_marked_as_such() -> None:
    """`uvx retab-mcp` asks PyPI for the package, which answers only once it is published: every
    paragraph or code block that runs it says so, in itself or in the paragraph just before."""
    for doc in (ROOT / "README.md", ROOT / "docs" / "clients.md"):
        blocks = paragraphs(doc.read_text())
        for before, block in zip(["", *blocks], blocks, strict=False):
            if re.search(r"uvx\)?\"? retab-mcp|uvx\", \"?args\"?[:=] ?\[\"retab-mcp\"\]", block):
                assert re.search(r"once (it is |the package is )?published", before + block, re.IGNORECASE), (
                    doc.name,
                    block,
                )


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs, separated by blank lines; a fenced code block is one, blank lines and all."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    return [*blocks, "\n".join(current)] if current else blocks


def test_every_inspector_command_that_starts_the_server_with_a_key_passes_it_with_e() -> None:
    """The Inspector gives the server it starts only HOME, PATH and a few more of the shell's variables."""
    commands = [
        line
        for doc in (README, CLIENTS_DOC)
        for line in doc.splitlines()
        if "inspector@" in line and " -- " in line and "--sandbox" not in line
    ]
    assert commands
    for command in commands:
        assert "-e RETAB_API_KEY=" in command.split(" -- ", 1)[0], command


def test_the_claude_code_allowlist_names_the_default_read_tools_and_no_cancel() -> None:
    [allowed] = re.findall(r'--allowedTools "([^"]+)"', CLIENTS_DOC)
    assert set(allowed.split(",")) == {f"mcp__retab__{e.tool}" for e in select(True, ())}
