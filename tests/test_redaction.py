"""The redactor reveals nothing about a key: what comes back to a caller is the same whatever part
of the key its text holds, on every path that echoes the caller's text (tool ids, resource URIs,
list filters, upstream details), in-process and over stdio. And what it masks, it masks whole:
keys, key-shaped tokens and exact encodings of a key, without garbling ordinary words.

The attack (security review C1): send `rt_test_` + a guess + `ZZ` and watch whether the echo
changes when the guess is the key's next character."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from retab_mcp import doctor
from retab_mcp.clients import KEY_PLACEHOLDER
from retab_mcp.config import Settings
from retab_mcp.errors import request_id_from, run_subject
from retab_mcp.logs import RedactingFormatter
from retab_mcp.redaction import NOT_SECRETS, Redactor
from retab_mcp.sandbox import Fault, RunningSandbox
from retab_mcp.server import RetabMCPServer
from tests.support import clean_env, connect

# The server's key, which the attacker never sees (rt_test_: the sandbox accepts any such key).
KEY = "rt_test_Q7xK2mPz9LbVw4NcR8tYh3Jd"
PREFIX = KEY[:8]  # public: every Retab key starts with one of three such prefixes
RIGHT = KEY[8]
GUESSES = [RIGHT, "A", "q", "7", "_"]
# Starting one character into the key: no key shape, only the key's own characters.
SLIDING = KEY[1:8]


def fragments(secret: str, width: int = 8) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


def leaked(text: str) -> list[str]:
    return [piece for piece in fragments(KEY) if piece in text]


def plain(text: str) -> str:
    """An answer without what differs between two calls anyway: the sandbox's request counter."""
    return re.sub(r"req_sbx_\d+", "req_sbx_N", text)


def everything_of(result: CallToolResult) -> str:
    blocks = [block.text for block in result.content if isinstance(block, TextContent)]
    return json.dumps(result.structured_content) + "\n".join(blocks)


def assert_no_oracle(answers: dict[str, str]) -> None:
    """Every guess got the same answer, and none holds a run of the key's characters."""
    assert len(set(answers.values())) == 1, answers
    assert leaked(answers[RIGHT]) == [], answers[RIGHT]


def assert_echo_is_plain(answers: dict[str, str], sent: Callable[[str], str]) -> None:
    """Each answer is the same text with the caller's own input in it: nothing else depends on it."""
    shapes = {answer.replace(sent(guess), "<sent>") for guess, answer in answers.items()}
    assert len(shapes) == 1, answers


# -- the redactor ------------------------------------------------------------------------------


def test_a_key_shaped_token_is_masked_whole_whatever_part_of_the_key_it_holds() -> None:
    redactor = Redactor([KEY])
    masked = {guess: redactor.text(f"Retab has no edit '{PREFIX}{guess}ZZ' (HTTP 404).") for guess in GUESSES}
    assert set(masked.values()) == {"Retab has no edit '[redacted]' (HTTP 404)."}
    assert redactor.text(f"see {PREFIX}{RIGHT}ZZ.ZZ/x, then") == "see [redacted], then"


def test_text_holding_a_run_of_the_keys_characters_comes_back_as_it_was_sent() -> None:
    # Masking runs of a key's characters is the oracle itself: with the key's 2nd to 8th
    # characters and a guess, the mask would appear only for the right guess.
    redactor = Redactor([KEY])
    for guess in GUESSES:
        text = f"Retab has no edit '{SLIDING}{guess}ZZ'."
        assert redactor.text(text) == text
        assert not redactor.needed(text)


@pytest.mark.parametrize(
    "encode",
    [
        lambda key: base64.b64encode(key.encode()).decode(),
        lambda key: base64.b64encode(key.encode()).decode().rstrip("="),
        lambda key: base64.b64encode(b"x" + key.encode() + b"y").decode(),
        lambda key: base64.b64encode(b"xy" + key.encode()).decode(),
        lambda key: base64.urlsafe_b64encode(b"Bearer " + key.encode()).decode(),
        lambda key: key.encode().hex(),
        lambda key: key.encode().hex().upper(),
        lambda key: "".join(f"%{byte:02X}" for byte in key.encode()),
        lambda key: key[::-1],
    ],
    ids=["base64", "base64-unpadded", "base64-offset-1", "base64-offset-2", "base64-url", "hex", "HEX", "pct", "rev"],
)
@pytest.mark.parametrize("key", [KEY, "Zq9xLmP4vB7nK2sD8fH1wQ+/="], ids=["retab-key", "plain-key"])
def test_exact_encodings_of_a_whole_key_are_masked_whole(encode: Callable[[str], str], key: str) -> None:
    encoded = encode(key)
    masked = Redactor([key]).text(f'{{"x-request-id": "{encoded}", "detail": "ok"}}')
    assert masked == '{"x-request-id": "[redacted]", "detail": "ok"}'


@pytest.mark.parametrize("secret", ["net", "RETAB", "etwo", KEY_PLACEHOLDER])
def test_ordinary_words_are_not_garbled_by_a_short_secret_or_a_placeholder(secret: str) -> None:
    hint = (
        "Retab could not be reached. Call get_edit (read-only) shortly; if it keeps failing, the user "
        "should check the network and RETAB_API_BASE_URL. Replace YOUR_RETAB_API_KEY with the key."
    )
    assert Redactor([secret]).text(hint) == hint


def test_a_short_secret_is_masked_where_it_stands_alone() -> None:
    assert Redactor(["net"]).text("the network, token net.") == "the network, token [redacted]."


def test_the_placeholder_the_templates_hold_is_not_a_secret() -> None:
    assert KEY_PLACEHOLDER in NOT_SECRETS


def test_logs_mask_a_token_holding_a_run_of_a_key_without_its_prefix() -> None:
    formatter = RedactingFormatter([KEY])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "upstream said: ends ...%s.", (KEY[-10:],), None)
    line = formatter.format(record)
    assert line.endswith("upstream said: ends [redacted]")
    assert leaked(line) == []


def test_a_run_id_is_quoted_back_only_when_valid_and_not_key_shaped() -> None:
    assert run_subject("edit", "edt_1") == "edit 'edt_1'"
    for run_id in (PREFIX + "abc", "x" * 129, "a.b", "Bearer", "SK_RETABx", 12):
        assert run_subject("edit", run_id) == "edit with the id you sent"


def test_a_request_id_is_kept_only_short_and_plain() -> None:
    assert request_id_from("req_01H/abc=") == "req_01H/abc="
    for value in ("a" * 129, "a b", "x\r\ny", "é", "", None):
        assert request_id_from(value) is None


# -- the attack, through every path that echoes a caller's text ---------------------------------


@pytest.fixture
def key_settings(sandbox: RunningSandbox) -> Settings:
    return Settings(api_key=KEY, base_url=sandbox.base_url, call_timeout=5, max_attempts=1)


async def answers_to(
    settings: Settings, ask: Callable[[Any, str], Awaitable[str]], sent: Callable[[str], str]
) -> dict[str, str]:
    async for agent in connect(RetabMCPServer(settings), "auto"):
        return {guess: plain(await ask(agent, sent(guess))) for guess in GUESSES}
    raise AssertionError("no connection")


def tool_asker(tool: str, argument: str, **extra: Any) -> Callable[[Any, str], Awaitable[str]]:
    async def ask(agent: Any, value: str) -> str:
        result, envelope = await agent.call(tool, {argument: value, **extra})
        assert envelope["ok"] is False
        return everything_of(result)

    return ask


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "argument"), [("get_edit", "edit_id"), ("cancel_edit", "edit_id"), ("get_blueprint", "blueprint_id")]
)
@pytest.mark.parametrize("tail", ["ZZ", "ZZ.ZZ", "ZZ" + "z" * 130], ids=["unknown-404", "invalid", "too-long"])
async def test_tool_ids_give_the_same_answer_whatever_the_guess(
    key_settings: Settings, sandbox: RunningSandbox, tool: str, argument: str, tail: str
) -> None:
    answers = await answers_to(key_settings, tool_asker(tool, argument), lambda guess: PREFIX + guess + tail)
    assert_no_oracle(answers)
    if tail == "ZZ":
        assert "with the id you sent" in answers[RIGHT]
        assert len(sandbox.sandbox.recorded()) == len(GUESSES)  # each went to Retab, and got a 404


@pytest.mark.anyio
async def test_a_run_of_the_keys_characters_in_an_id_is_echoed_the_same_for_every_guess(
    key_settings: Settings,
) -> None:
    def sent(guess: str) -> str:
        return SLIDING + guess + "ZZ"

    answers = await answers_to(key_settings, tool_asker("get_edit", "edit_id"), sent)
    assert_echo_is_plain(answers, sent)
    assert f"Retab has no edit '{sent(RIGHT)}'" in answers[RIGHT]


@pytest.mark.anyio
@pytest.mark.parametrize("status", [404, 422])
async def test_an_upstream_detail_that_echoes_the_id_gives_the_same_answer_whatever_the_guess(
    key_settings: Settings, sandbox: RunningSandbox, status: int
) -> None:
    async def ask(agent: Any, value: str) -> str:
        detail = [{"loc": ["path", "edit_id"], "msg": f"no such id {value}, nor edits/{value}x"}]
        sandbox.sandbox.add_fault(Fault(status=status, body=json.dumps({"detail": detail})))
        return await tool_asker("cancel_edit", "edit_id")(agent, value)

    answers = await answers_to(key_settings, ask, lambda guess: PREFIX + guess + "ZZ")
    assert_no_oracle(answers)
    assert "Retab said" in answers[RIGHT]


@pytest.mark.anyio
@pytest.mark.parametrize("filter_name", ["filename", "after"])  # `status` takes known statuses only
async def test_list_filters_give_the_same_answer_whatever_the_guess(
    key_settings: Settings, sandbox: RunningSandbox, filter_name: str
) -> None:
    async def ask(agent: Any, value: str) -> str:
        # An upstream that quotes the filter back, as a 422 may.
        sandbox.sandbox.add_fault(
            Fault(status=422, body=json.dumps({"detail": [{"loc": ["query", filter_name], "msg": f"bad {value}"}]}))
        )
        result = await agent.client.call_tool("list_edits", {filter_name: value})
        return everything_of(result)

    answers = await answers_to(key_settings, ask, lambda guess: PREFIX + guess + "ZZ")
    assert_no_oracle(answers)


@pytest.mark.anyio
async def test_progress_messages_give_the_same_answer_whatever_the_guess(
    key_settings: Settings, sandbox: RunningSandbox
) -> None:
    async def ask(agent: Any, value: str) -> str:
        # An upstream that knows a run by the id the caller sent, still going: the wait reports it.
        sandbox.sandbox.add_fault(Fault(status=200, body=json.dumps({"id": value, "status": "in_progress"}), times=10))
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(str(message))

        arguments = {"edit_id": value, "wait_seconds": 0.1}
        await agent.client.call_tool("get_edit", arguments, progress_callback=on_progress)
        assert messages
        return messages[0]

    answers = await answers_to(key_settings, ask, lambda guess: PREFIX + guess + "ZZ")
    assert_no_oracle(answers)


@pytest.mark.anyio
@pytest.mark.parametrize("tail", ["ZZ", ".ZZ"], ids=["unknown-404", "invalid"])
async def test_resource_uris_give_the_same_answer_whatever_the_guess(key_settings: Settings, tail: str) -> None:
    async def ask(agent: Any, value: str) -> str:
        with pytest.raises(MCPError) as caught:
            await agent.client.read_resource(f"retab://edits/{value}/filled_document")
        # The SDK puts the URI the caller sent in `data`: the caller's own text, as sent.
        return f"{caught.value.error.code} {caught.value.error.message}"

    answers = await answers_to(key_settings, ask, lambda guess: PREFIX + guess + tail)
    assert_no_oracle(answers)
    assert "id you sent" in answers[RIGHT]


@pytest.mark.anyio
async def test_the_resources_status_echo_is_redacted(key_settings: Settings, sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=200, body=json.dumps({"id": "edt_x", "status": KEY, "output": {}})))
    async for agent in connect(RetabMCPServer(key_settings), "auto"):
        with pytest.raises(MCPError) as caught:
            await agent.client.read_resource("retab://edits/edt_x/filled_document")
    message = caught.value.error.message
    assert "edit 'edt_x' has no filled document to read (its status is '[redacted]')" in message
    assert leaked(message) == []


@pytest.mark.anyio
async def test_a_huge_request_id_makes_no_huge_result(key_settings: Settings, sandbox: RunningSandbox) -> None:
    sandbox.sandbox.add_fault(Fault(status=404, headers={"x-request-id": "r" * 60_000}))
    async for agent in connect(RetabMCPServer(key_settings), "auto"):
        result, envelope = await agent.call("get_edit", {"edit_id": "edt_nope"})
    assert envelope["error"]["code"] == "not_found"
    assert envelope["error"]["request_id"] is None
    assert len(everything_of(result)) < 4_000


@pytest.mark.anyio
async def test_over_stdio_get_edit_gives_the_same_answer_whatever_the_guess(sandbox: RunningSandbox) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "retab_mcp"],
        env=clean_env(RETAB_API_KEY=KEY, RETAB_API_BASE_URL=sandbox.base_url),
    )
    answers: dict[str, str] = {}
    sliding: dict[str, str] = {}
    async with Client(params, mode="auto") as client:
        for guess in GUESSES:
            result = await client.call_tool("get_edit", {"edit_id": PREFIX + guess + "ZZ"})
            answers[guess] = plain(everything_of(result))
            result = await client.call_tool("get_edit", {"edit_id": SLIDING + guess + "ZZ"})
            sliding[guess] = plain(everything_of(result))
    assert_no_oracle(answers)
    assert "not_found" in answers[RIGHT]
    assert_echo_is_plain(sliding, lambda guess: SLIDING + guess + "ZZ")


# -- doctor ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_id", "shown"),
    [
        ("rt_live_" + "A" * 24, "(request id [redacted])"),  # key-shaped: masked whole
        (KEY, "(request id [redacted])"),  # the key itself, echoed back
        ("r" * 60_000, "answered HTTP 401: "),  # too long: left out
    ],
    ids=["key-shaped", "the-key", "huge"],
)
def test_doctor_prints_no_key_shaped_or_huge_request_id(sandbox: RunningSandbox, request_id: str, shown: str) -> None:
    sandbox.sandbox.add_fault(Fault(status=401, match="/v1/edits", headers={"x-request-id": request_id}))
    results = {
        result.id: result for result in doctor.check_all({"RETAB_API_KEY": KEY, "RETAB_API_BASE_URL": sandbox.base_url})
    }
    detail = results["auth"].detail
    assert results["auth"].status == "FAIL"
    assert shown in detail
    assert len(detail) < 200
    assert leaked(detail) == []
    assert "AAAAAAAA" not in detail


@pytest.mark.anyio
async def test_the_call_log_quotes_a_valid_id_and_never_a_malformed_or_key_shaped_one(
    sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(api_key=KEY, base_url=sandbox.base_url, call_timeout=5)
    sent = ["edt_unknown_9", PREFIX + RIGHT + "ZZ", "x" * 5_000]
    with caplog.at_level(logging.INFO, logger="retab_mcp.calls"):
        async for agent in connect(RetabMCPServer(settings), "auto"):
            for edit_id in sent:
                await agent.call("get_edit", {"edit_id": edit_id})
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "retab_mcp.calls"]
    # A valid id, as sent; a key-shaped one, not; one past the id pattern is refused before any call.
    assert [line["id"] for line in lines] == ["edt_unknown_9", "(malformed)"]
    assert PREFIX + RIGHT not in caplog.text
    assert "x" * 200 not in caplog.text
