"""Build the MCP Bundle (`.mcpb`) for one-click install in Claude Desktop.

    uv run python -m scripts.build_mcpb [OUT.mcpb]      (default dist/retab-mcp-VERSION.mcpb)

The bundle is `server.type: "uv"`: it carries the package source, a pyproject.toml and a
uv.lock, and the host installs the dependencies with `uv run --frozen` (the manifest's command).
The staged pyproject.toml is this repository's one without `[dependency-groups]`, so a host
running `uv run` there never installs the test and framework groups, and with its `[tool.uv]`
settings but `default-groups` (`system-certs`: installs work behind TLS-inspecting proxies). Its
uv.lock is this repository's one re-locked for that pyproject: uv keeps every locked version and
only drops the groups' packages, so the bundle installs the versions the tests ran with.
tests/test_bundle.py validates, packs, unpacks and starts this bundle, and compares the locks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
MANIFEST_DIR: Final = ROOT / "manifests" / "mcpb"
MCPB: Final = ("npx", "-y", "@anthropic-ai/mcpb@2.1.2")  # pinned: the tests check this version's rules
DROPPED_TABLES: Final = ("dependency-groups", "tool.uv")
DROPPED_UV_SETTINGS: Final = ("default-groups",)  # it names the dropped groups


def bundle_pyproject(text: str) -> str:
    """`text` without the tables in DROPPED_TABLES (each up to the next table header), and with
    `[tool.uv]` written back without DROPPED_UV_SETTINGS."""
    settings = tomllib.loads(text).get("tool", {}).get("uv", {})
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$", line)
        if header:
            dropping = header.group(1).strip() in DROPPED_TABLES
        if not dropping:
            kept.append(line)
    bundle = re.sub(r"\n{3,}", "\n\n", "".join(kept)).rstrip("\n") + "\n"
    uv = {name: value for name, value in settings.items() if name not in DROPPED_UV_SETTINGS}
    if uv:
        # JSON's true/false, strings and lists of strings are TOML too.
        bundle += "\n[tool.uv]\n" + "".join(f"{name} = {json.dumps(value)}\n" for name, value in uv.items())
    return bundle


def lock(project: Path) -> None:
    """Re-lock `project`, starting from this repository's uv.lock, so every version stays as locked."""
    shutil.copy2(ROOT / "uv.lock", project / "uv.lock")
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    done = subprocess.run([uv, "lock"], cwd=project, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"uv lock failed in the staged bundle:\n{done.stderr}")


def stage(dest: Path) -> Path:
    """Lay out the bundle's files in `dest`: manifest, icon, package source, pyproject, its lock, README."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in MANIFEST_DIR.iterdir():
        shutil.copy2(item, dest / item.name)
    shutil.copytree(ROOT / "retab_mcp", dest / "retab_mcp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "README.md", dest / "README.md")  # pyproject's `readme`: the build needs it
    (dest / "pyproject.toml").write_text(bundle_pyproject((ROOT / "pyproject.toml").read_text()))
    lock(dest)
    return dest


def pack(source: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*MCPB, "pack", str(source), str(out)], check=True)  # noqa: S603 - fixed command


def main(argv: list[str]) -> int:
    from retab_mcp import __version__

    out = Path(argv[0]) if argv else ROOT / "dist" / f"retab-mcp-{__version__}.mcpb"
    with tempfile.TemporaryDirectory() as staging:
        pack(stage(Path(staging) / "retab-mcp"), out.resolve())
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
