"""Build the MCP Bundle (`.mcpb`) for one-click install in Claude Desktop.

    uv run python -m scripts.build_mcpb [OUT.mcpb]      (default dist/retab-mcp-VERSION.mcpb)

The bundle is `server.type: "uv"`: it carries the package source and a pyproject.toml, and the
host installs the dependencies with uv. So the staged pyproject.toml is this repository's one
without `[dependency-groups]` and `[tool.uv]`: a host running `uv run` there must not install
the test and framework groups this repository installs by default. No uv.lock goes in, since it
would no longer match. tests/test_bundle.py validates, packs, unpacks and starts this bundle.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
MANIFEST_DIR: Final = ROOT / "manifests" / "mcpb"
MCPB: Final = ("npx", "-y", "@anthropic-ai/mcpb@2.1.2")  # pinned: the tests check this version's rules
DROPPED_TABLES: Final = ("dependency-groups", "tool.uv")


def bundle_pyproject(text: str) -> str:
    """`text` without the tables in DROPPED_TABLES (each up to the next table header)."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$", line)
        if header:
            dropping = header.group(1).strip() in DROPPED_TABLES
        if not dropping:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "".join(kept))


def stage(dest: Path) -> Path:
    """Lay out the bundle's files in `dest`: manifest, icon, package source, pyproject, README."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in MANIFEST_DIR.iterdir():
        shutil.copy2(item, dest / item.name)
    shutil.copytree(ROOT / "retab_mcp", dest / "retab_mcp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "README.md", dest / "README.md")  # pyproject's `readme`: the build needs it
    (dest / "pyproject.toml").write_text(bundle_pyproject((ROOT / "pyproject.toml").read_text()))
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
