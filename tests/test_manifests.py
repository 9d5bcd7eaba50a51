"""The manifests in manifests/ and docs/clients.md against the server itself.

The drift test starts the real server and compares every manifest with what it publishes:
the same tools as tools/list, the same version as the package (pyproject reads it from
retab_mcp/__init__.py), the same environment variables as config.ENV_VARS. A change to any of
them fails here until `uv run python -m scripts.sync_manifests` (or a hand edit) catches up.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import struct
import tomllib
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import Tool

from retab_mcp import __version__, clients, doctor
from retab_mcp.config import ENV_VARS, Settings
from scripts import sync_manifests
from tests.support import ROOT, SERVER_COMMAND, clean_env

MANIFESTS = ROOT / "manifests"
SERVER_JSON = MANIFESTS / "server.json"
MCPB = MANIFESTS / "mcpb" / "manifest.json"
CLIENT_MANIFESTS = {
    "claude-desktop": MANIFESTS / "claude_desktop_config.json",
    "cursor": MANIFESTS / "cursor.mcp.json",
    "vscode": MANIFESTS / "vscode.mcp.json",
}
REGISTRY_SCHEMA = ROOT / "tests" / "data" / "server.schema.json"
REGISTRY_SCHEMA_ID = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
DOCS = ROOT / "docs" / "clients.md"
ENV_NAMES = [var.name for var in ENV_VARS]


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def published() -> tuple[list[Tool], str]:
    """tools/list and serverInfo.version of the real server, started as a client would."""
    import anyio

    async def ask() -> tuple[list[Tool], str]:
        params = StdioServerParameters(command=SERVER_COMMAND[0], args=SERVER_COMMAND[1:], env=clean_env())
        async with Client(params) as client:
            tools = (await client.list_tools()).tools
            assert client.server_info is not None
            return tools, client.server_info.version

    return anyio.run(ask)


def env_names_in(document: Any) -> set[str]:
    """Every environment variable a manifest names, wherever it names them."""
    names: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "env" and isinstance(value, dict):
                names |= set(value)
            elif key == "environmentVariables":
                names |= {entry["name"] for entry in value}
            else:
                names |= env_names_in(value)
    elif isinstance(document, list):
        for item in document:
            names |= env_names_in(item)
    return names


# -- drift ------------------------------------------------------------------------------------


def test_the_bundle_names_the_tools_of_tools_list(published: tuple[list[Tool], str]) -> None:
    tools, _ = published
    assert [(t["name"], t["description"]) for t in load(MCPB)["tools"]] == [(t.name, t.title) for t in tools]
    assert load(MCPB)["tools_generated"] is False


def test_every_manifest_has_the_package_version(published: tuple[list[Tool], str]) -> None:
    _, server_version = published
    # pyproject takes the version from the file hatch reads; the installed metadata is its output.
    project = pyproject()
    assert "version" in project["project"]["dynamic"]
    version_file = ROOT / project["tool"]["hatch"]["version"]["path"]
    assert f'__version__ = "{__version__}"' in version_file.read_text()
    assert importlib.metadata.version("retab-mcp") == __version__ == server_version
    server = load(SERVER_JSON)
    assert server["version"] == __version__
    assert [p["version"] for p in server["packages"]] == [__version__]
    assert load(MCPB)["version"] == __version__


def test_server_json_documents_every_variable_the_server_reads() -> None:
    [package] = load(SERVER_JSON)["packages"]
    entries = package["environmentVariables"]
    expected = sync_manifests.env_var_entries(entries)
    missing = [e for e in expected if e["name"] not in {x["name"] for x in entries}]
    assert not missing, "add to server.json (or run scripts/sync_manifests): " + json.dumps(missing, indent=2)
    assert [e["name"] for e in entries] == ENV_NAMES
    for entry, var in zip(entries, ENV_VARS, strict=True):
        assert entry["description"] == var.description, var.name
        assert entry.get("default") == var.default, var.name
        assert entry["isSecret"] is var.secret, var.name
        assert entry["isRequired"] is (var.name == clients.KEY_VAR), var.name
        # Whatever the manifest offers a user must be a value the server accepts.
        for value in [*entry.get("choices", []), *([entry["default"]] if "default" in entry else [])]:
            Settings.from_env({var.name: value})
        if entry.get("format") == "number":
            float(entry["default"])


def test_client_manifests_carry_the_key_and_only_variables_the_server_reads() -> None:
    for path in [*CLIENT_MANIFESTS.values(), SERVER_JSON, MCPB]:
        names = env_names_in(load(path))
        assert clients.KEY_VAR in names, path
        assert names <= set(ENV_NAMES), f"{path} names variables the server does not read: {names - set(ENV_NAMES)}"


def test_client_manifests_are_what_config_prints_with_a_bare_uvx() -> None:
    """The examples and `retab-mcp config` share one shape; only the command's path differs."""
    portable = clients.Launch("uvx", ("retab-mcp",))
    for name, path in CLIENT_MANIFESTS.items():
        client = clients.CLIENTS[name]
        assert load(path) == clients.document(client, clients.entry(client, portable)), path
    [package] = load(SERVER_JSON)["packages"]
    assert (package["runtimeHint"], [package["identifier"]]) == (portable.command, list(portable.args))


def test_the_bundle_maps_its_settings_into_the_server_environment() -> None:
    manifest = load(MCPB)
    assert manifest["manifest_version"] == "0.4"
    assert manifest["server"]["type"] == "uv"
    env = manifest["server"]["mcp_config"]["env"]
    user_config = manifest["user_config"]
    mapped = {re.fullmatch(r"\$\{user_config\.(\w+)\}", value)[1]: name for name, value in env.items()}  # type: ignore[index]
    assert set(mapped) == set(user_config)
    key_field = next(field for key, field in user_config.items() if mapped[key] == clients.KEY_VAR)
    assert (key_field["type"], key_field["sensitive"], key_field["required"]) == ("string", True, True)
    by_name = {var.name: var for var in ENV_VARS}
    for key, field in user_config.items():
        assert field["description"] == by_name[mapped[key]].description
        default = by_name[mapped[key]].default
        assert field.get("default") == (default == "true" if field["type"] == "boolean" else default)
    assert manifest["compatibility"]["runtimes"]["python"] == pyproject()["project"]["requires-python"]
    assert (MCPB.parent / manifest["icon"]).is_file()


def test_the_derived_parts_are_in_sync() -> None:
    """What scripts/sync_manifests derives is what is committed."""
    assert sync_manifests.drifted() == []


# -- the registry -----------------------------------------------------------------------------


def test_server_json_validates_against_the_registry_schema() -> None:
    schema = load(REGISTRY_SCHEMA)
    assert schema["$id"] == REGISTRY_SCHEMA_ID  # the copy tests/data/README.md describes
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    server = load(SERVER_JSON)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(server)]
    assert errors == []

    # The schema has teeth: what the registry rejects fails here too.
    [package] = server["packages"]
    broken = [
        {**server, "description": "x" * 101},
        {**server, "name": "io.github.retab-mcp/retab/mcp"},
        {**server, "packages": [{**package, "version": "latest"}]},
        {**server, "packages": [{k: v for k, v in package.items() if k != "transport"}]},
    ]
    for document in broken:
        assert not validator.is_valid(document), document


def test_server_json_follows_the_official_registry_rules() -> None:
    server = load(SERVER_JSON)
    assert server["$schema"] == SCHEMA_URL
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/retab-mcp", server["name"])
    assert len(server["description"]) <= 100
    [package] = server["packages"]
    assert package["registryType"] == "pypi"
    assert package["registryBaseUrl"] == "https://pypi.org"  # the only PyPI the registry accepts
    assert package["identifier"] == pyproject()["project"]["name"]
    assert package["transport"] == {"type": "stdio"}
    assert not re.search(r"[\^~<>=*x]|latest", package["version"])  # one exact version


def test_the_pypi_readme_proves_ownership() -> None:
    readme = (ROOT / pyproject()["project"]["readme"]).read_text()
    lines = re.findall(r"^mcp-name: (\S+)$", readme, re.MULTILINE)
    if not lines:
        pytest.skip("README.md has no `mcp-name:` line yet: it is added on main (see docs/clients.md)")
    assert lines == [load(SERVER_JSON)["name"]]


# -- the icon ---------------------------------------------------------------------------------


def test_the_bundle_icon_is_a_sound_512px_png() -> None:
    data = (MCPB.parent / load(MCPB)["icon"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, color) == (512, 512, 8, 6)  # what Claude Desktop recommends, RGBA
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + width * 4)
    assert b"IEND" in chunks


# -- docs/clients.md --------------------------------------------------------------------------


def test_the_docs_show_the_manifests_as_they_are() -> None:
    text = DOCS.read_text()
    shown = re.findall(r"<!-- manifest: (\S+) -->\n```json\n(.*?)\n```", text, re.DOTALL)
    assert {name for name, _ in shown} == {str(p.relative_to(ROOT)) for p in CLIENT_MANIFESTS.values()}
    for name, block in shown:
        assert json.loads(block) == load(ROOT / name), name


def test_the_docs_list_the_tools_of_tools_list(published: tuple[list[Tool], str]) -> None:
    tools, _ = published
    section = DOCS.read_text().split("## Tools", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", section, re.MULTILINE)
    assert [name for name, _ in rows] == [tool.name for tool in tools]
    for (_, arguments), tool in zip(rows, tools, strict=True):
        assert re.findall(r"`(\w+)`", arguments) == list(tool.input_schema["properties"])


def test_the_troubleshooting_section_covers_every_doctor_check() -> None:
    section = DOCS.read_text().split("## Troubleshooting", 1)[1]
    for check in doctor.CHECKS:
        assert f"\n### {check.title}\n" in section, check.title
        body = section.split(f"\n### {check.title}\n", 1)[1].split("\n### ", 1)[0]
        for fix in check.fixes:
            assert f"- {fix}\n" in body, (check.title, fix)
