"""What the agent should do next after a failed call: the envelope's `hint`, in the server's words.

It names tools (the read to call when a run's state is in doubt, the tool an id belongs to), so
it lives beside the envelope (results.py) and the run table, not in errors.py, which knows no
tool. Wherever the run's state is in doubt, the hint points at the read tool (read-only: hosts
run it without asking the user), never at another cancel.
"""

from __future__ import annotations

from retab_mcp.endpoints import Endpoint, owner_tool, tool_for
from retab_mcp.errors import CallFailed, ErrorCode


def hint_for(failure: CallFailed, endpoint: Endpoint, run_id: str) -> str:
    """What the agent should do next after `failure` of a call to `endpoint` for `run_id`: the
    failure's own hint where it has one, else the code's."""
    if failure.hint:
        return failure.hint
    tool = endpoint.tool
    read = tool_for("read", endpoint.kind)
    check = (
        f"Call {read} (read-only) to learn the run's status" if endpoint.action == "cancel" else f"Call {tool} again"
    )
    match failure.code:
        case ErrorCode.INVALID_ARGUMENT:
            return "Fix the arguments and call again; nothing was sent to Retab."
        case ErrorCode.CONFIGURATION_ERROR:
            return (
                "Ask the user to set RETAB_API_KEY in this MCP server's environment (for example the "
                '"env" block of its client configuration) and restart it; retrying will not help.'
            )
        case ErrorCode.UNAUTHORIZED:
            return (
                "The API key is wrong, expired or revoked. Ask the user for a valid Retab API key; "
                "retrying with the same key will not help."
            )
        case ErrorCode.FORBIDDEN:
            return "The key cannot act on this run (another organization or missing permission). Ask the user."
        case ErrorCode.NOT_FOUND:
            if owner := owner_tool(endpoint, run_id):
                return f"This id looks like it belongs to {owner}; call {owner} with it instead."
            return (
                "Check the id: it must be the exact id Retab returned when the run was created. "
                "Retrying the same id will not help."
            )
        case ErrorCode.CONFLICT:
            return f"The run changed meanwhile. {check}, then decide whether to call {tool} again."
        case ErrorCode.INVALID_REQUEST:
            return "Retab refused the request as malformed; check the arguments. Retrying unchanged will not help."
        case ErrorCode.RATE_LIMITED:
            if failure.retry_after_seconds is not None:
                return f"Wait {_seconds(failure.retry_after_seconds)}, then call {tool} again."
            return f"Wait a few seconds, then call {tool} again."
        case ErrorCode.UPSTREAM_UNAVAILABLE:
            wait = _seconds(failure.retry_after_seconds) if failure.retry_after_seconds else "a minute"
            return (
                f"Retab is having trouble; the server already retried. Wait {wait}, then call {tool} again; "
                "if it keeps failing, tell the user the run may still be going."
            )
        case ErrorCode.TIMEOUT:
            if endpoint.action == "cancel":
                return (
                    "Retab did not answer in time; the cancel may or may not have reached it. "
                    f"{check} before cancelling again."
                )
            return f"Retab did not answer in time. {check}."
        case ErrorCode.NETWORK_ERROR:
            return (
                f"Retab could not be reached. {check} shortly; if it keeps failing, the user should check "
                "the network and RETAB_API_BASE_URL."
            )
        case ErrorCode.OVERLOADED:
            return (
                f"retab-mcp is busy and sent nothing to Retab. Wait {_seconds(failure.retry_after_seconds or 1)}, "
                f"then call {tool} again."
            )
        case ErrorCode.SHUTTING_DOWN:
            if endpoint.action == "cancel":
                return (
                    "retab-mcp is restarting; the cancel may or may not have reached Retab. In a few seconds, "
                    f"call {read} (read-only) to learn the run's status before cancelling again."
                )
            return f"retab-mcp is restarting. Call {tool} again in a few seconds."
        case ErrorCode.INVALID_RESPONSE:
            return (
                f"Retab's answer could not be read, so the state is unknown. {check} once; if it repeats, "
                "tell the user."
            )
        case ErrorCode.INTERNAL_ERROR:
            return "retab-mcp failed unexpectedly; tell the user (its log on stderr has the details)."


def _seconds(value: float) -> str:
    return f"{value:g} second" + ("" if value == 1 else "s")
