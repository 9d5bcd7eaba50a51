"""The filled_document resource: read like a call (admitted, under the drain's cut-off), the
declared MIME type kept, percent-encoded data URLs decoded and sized once decoded, and the
memory of concurrent reads of a large document bounded, in a real HTTP server process."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents

from retab_mcp.config import Settings
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import MAX_RESOURCE_BYTES, RetabMCPServer
from tests.support import Agent, connect, http_server

URI = "retab://edits/edt_done/filled_document"
KEY = "rt_test_reader_1"


def edit_with(url: str) -> str:
    """A completed edit whose filled document is `url`, as Retab's read answers it."""
    output = {"filled_document": {"filename": "f.pdf", "url": url}}
    return json.dumps({"id": "edt_done", "status": "completed", "output": output})


@pytest.fixture
async def reader(settings: Settings) -> AsyncIterator[Agent]:
    async for connected in connect(RetabMCPServer(replace(settings, max_resource_reads=1)), "auto"):
        yield connected


async def read(agent: Agent, sandbox: RunningSandbox, url: str) -> BlobResourceContents:
    sandbox.sandbox.add_fault(Fault(status=200, body=edit_with(url), match="/v1/edits/edt_done"))
    [content] = (await agent.client.read_resource(URI)).contents
    assert isinstance(content, BlobResourceContents)
    return content


@pytest.mark.anyio
async def test_the_declared_mime_type_is_kept(reader: Agent, sandbox: RunningSandbox) -> None:
    html = b"<p>filled</p>"
    content = await read(reader, sandbox, "data:text/html;base64," + base64.b64encode(html).decode())
    assert (content.mime_type, base64.b64decode(content.blob)) == ("text/html", html)


@pytest.mark.anyio
async def test_a_percent_encoded_document_is_decoded(reader: Agent, sandbox: RunningSandbox) -> None:
    content = await read(reader, sandbox, "data:application/pdf,%25PDF-1.4%20hello%0A\\")
    assert base64.b64decode(content.blob) == b"%PDF-1.4 hello\n\\"
    assert content.mime_type == "application/pdf"


@pytest.mark.anyio
async def test_a_percent_encoded_document_is_sized_once_decoded(reader: Agent, sandbox: RunningSandbox) -> None:
    """21 MiB of plain characters is 21 MiB of document, over the limit; 24 MiB of escapes is 8."""
    with pytest.raises(MCPError) as caught:
        await read(reader, sandbox, "data:application/pdf," + "A" * (MAX_RESOURCE_BYTES + 1024 * 1024))
    assert f"over {MAX_RESOURCE_BYTES} bytes" in caught.value.error.message
    escaped = await read(reader, sandbox, "data:application/pdf," + "%41" * (8 * 1024 * 1024))
    assert base64.b64decode(escaped.blob) == b"A" * (8 * 1024 * 1024)


@pytest.mark.anyio
async def test_a_malformed_escape_is_a_clear_error(reader: Agent, sandbox: RunningSandbox) -> None:
    with pytest.raises(MCPError) as caught:
        await read(reader, sandbox, "data:application/pdf,%PDF")
    assert "cannot be read" in caught.value.error.message


@pytest.mark.anyio
async def test_reads_past_their_cap_are_refused_at_once(reader: Agent, sandbox: RunningSandbox) -> None:
    """With a cap of 1, a second read while the first waits on a slow API is turned away."""
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7").decode()
    sandbox.sandbox.add_fault(Fault(status=200, body=edit_with(pdf), delay=2.0, match="/v1/edits/edt_done"))
    outcomes: list[object] = []

    async def one() -> None:
        try:
            outcomes.append(await reader.client.read_resource(URI))
        except MCPError as error:
            outcomes.append(error.error.message)

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        await anyio.sleep(0.3)
        group.start_soon(one)
    refused = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(refused) == 1
    assert "limit of resource reads in flight" in refused[0]
    assert len(sandbox.sandbox.recorded()) == 1  # the refused read sent nothing


# -- a real HTTP server process ----------------------------------------------------------------


def post_read(mcp: str, answers: list[httpx.Response]) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": URI}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25", "Api-Key": KEY}
    answers.append(httpx.post(mcp, json=request, headers=headers, timeout=60))


def test_at_sigterm_a_read_in_flight_answers_an_error_within_the_grace(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=None, delay=30.0, match="/v1/edits/edt_done"))
    with http_server(RETAB_API_BASE_URL=sandbox.base_url, RETAB_MCP_SHUTDOWN_GRACE="3") as server:
        process, mcp = server.process, server.mcp
        answers: list[httpx.Response] = []
        caller = threading.Thread(target=post_read, args=(mcp, answers))
        caller.start()
        time.sleep(1.0)  # the read is waiting on the stalled API
        process.send_signal(signal.SIGTERM)
        caller.join(timeout=15)
        assert process.wait(timeout=15) == 0
    [response] = answers
    assert response.status_code == 200, response.text
    assert "shut down" in response.json()["error"]["message"]


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_four_reads_of_a_19_mib_document_stay_under_256_mb(sandbox: RunningSandbox) -> None:
    """The pod's memory limit (256Mi) holds with 4 concurrent reads of a legal document."""
    pdf = b"%PDF-1.7\n" + os.urandom(19 * 1024 * 1024 - 16) + b"\n%%EOF\n"
    body = edit_with("data:application/pdf;base64," + base64.b64encode(pdf).decode())
    sandbox.sandbox.add_fault(Fault(status=200, body=body, delay=0.5, match="/v1/edits/edt_done", times=4))
    with http_server(RETAB_API_BASE_URL=sandbox.base_url) as server:
        process, mcp = server.process, server.mcp
        answers: list[httpx.Response] = []
        callers = [threading.Thread(target=post_read, args=(mcp, answers)) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=60)
        peak = vm_hwm_kib(process.pid)
    assert len(answers) == 4
    served = [a for a in answers if "result" in a.json()]
    assert served, [a.json()["error"]["message"] for a in answers]
    for answer in served:
        [content] = answer.json()["result"]["contents"]
        assert base64.b64decode(content["blob"]) == pdf
    assert peak < 256 * 1024, f"{peak // 1024} MB"
