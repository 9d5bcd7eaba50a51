"""`retab-mcp doctor` as a user runs it: a subprocess, against `retab-mcp sandbox --port 0`."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from retab_mcp import doctor
from retab_mcp.clients import KEY_PLACEHOLDER
from retab_mcp.sandbox import FORBIDDEN_API_KEY, SANDBOX_API_KEY
from tests.support import SERVER_COMMAND, clean_env, sandbox_process


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with sandbox_process() as url:
        yield url


@dataclass(frozen=True)
class Run:
    code: int
    output: str

    def status(self, check_id: str) -> str:
        """The status printed on the line of check `check_id`."""
        title = next(check.title for check in doctor.CHECKS if check.id == check_id)
        line = next(line for line in self.output.splitlines() if f" {title}: " in line)
        return line.split()[0]


def run_doctor(**env: str) -> Run:
    done = subprocess.run(
        [*SERVER_COMMAND, "doctor"], env=clean_env(**env), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stderr == "", done.stderr
    return Run(done.returncode, done.stdout)


def test_passes_against_the_sandbox(base_url: str) -> None:
    run = run_doctor(RETAB_API_KEY=SANDBOX_API_KEY, RETAB_API_BASE_URL=base_url)
    assert run.code == 0, run.output
    assert [run.status(check.id) for check in doctor.CHECKS] == ["ok"] * len(doctor.CHECKS)
    assert "fix:" not in run.output
    assert SANDBOX_API_KEY not in run.output


def test_a_missing_key_fails_and_names_the_fix(base_url: str) -> None:
    run = run_doctor(RETAB_API_BASE_URL=base_url)
    assert run.code == 1
    assert run.status("key") == "FAIL"
    assert doctor.FIX_KEY_MISSING in run.output
    assert run.status("auth") == "skip"


@pytest.mark.parametrize(
    ("key", "failing", "fixes"),
    [
        ("rt_live_0123456789abcdef", {"auth"}, [doctor.FIX_KEY_REJECTED]),
        (FORBIDDEN_API_KEY, {"auth"}, [doctor.FIX_KEY_FORBIDDEN]),
        # Never sent: the server refuses it before any read, and so does doctor.
        (KEY_PLACEHOLDER, {"key-shape"}, [doctor.FIX_KEY_PLACEHOLDER]),
        ("<your key>", {"key-shape"}, [doctor.FIX_KEY_PLACEHOLDER]),
        ("0123456789abcdef", {"auth"}, [doctor.FIX_KEY_PREFIX, doctor.FIX_KEY_REJECTED]),
    ],
    ids=["rejected", "forbidden", "placeholder", "example", "not-a-retab-key"],
)
def test_a_wrong_key_fails_names_the_fix_and_is_never_printed(
    base_url: str, key: str, failing: set[str], fixes: list[str]
) -> None:
    run = run_doctor(RETAB_API_KEY=key, RETAB_API_BASE_URL=base_url)
    assert run.code == 1
    assert {check.id for check in doctor.CHECKS if run.status(check.id) == "FAIL"} == failing
    for fix in fixes:
        assert f"fix: {fix}" in run.output
    if key != KEY_PLACEHOLDER:  # the placeholder is no secret, and naming it is the point
        # Not the key, nor any part of it past the prefix that names its kind.
        assert key.strip('"').removeprefix("rt_test_").removeprefix("rt_live_") not in run.output


@pytest.mark.parametrize("key", [f'"{SANDBOX_API_KEY}"', f"Bearer {SANDBOX_API_KEY}"])
def test_a_quoted_key_warns_and_the_key_inside_is_read_with(base_url: str, key: str) -> None:
    """The server takes the quotes (or `Bearer `) off: doctor warns, and reads with what is left."""
    run = run_doctor(RETAB_API_KEY=key, RETAB_API_BASE_URL=base_url)
    assert run.code == 0, run.output
    assert run.status("key-shape") == "warn"
    assert f"fix: {doctor.FIX_KEY_QUOTED}" in run.output
    assert run.status("auth") == "ok"


def test_an_unreachable_base_url_fails_and_skips_the_read() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = run_doctor(RETAB_API_KEY=SANDBOX_API_KEY, RETAB_API_BASE_URL=f"http://127.0.0.1:{port}")
    assert run.code == 1
    assert run.status("reachable") == "FAIL"
    assert doctor.FIX_UNREACHABLE in run.output
    assert run.status("auth") == "skip"


def test_a_bad_setting_is_a_failed_check_naming_the_variable(base_url: str) -> None:
    run = run_doctor(RETAB_API_KEY=SANDBOX_API_KEY, RETAB_API_BASE_URL=base_url, RETAB_MCP_CALL_TIMEOUT="soon")
    assert run.code == 1
    assert run.status("settings") == "FAIL"
    assert "RETAB_MCP_CALL_TIMEOUT" in run.output
    assert doctor.FIX_SETTINGS in run.output
    assert run.status("key") == "ok"  # the other checks still run


def test_basic_auth_in_the_base_url_is_not_printed(base_url: str) -> None:
    with_password = base_url.replace("http://", "http://user:s3cret-pw@")
    run = run_doctor(RETAB_API_KEY=SANDBOX_API_KEY, RETAB_API_BASE_URL=with_password)
    assert "s3cret-pw" not in run.output


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("2.3.0", ">=2.3,<3", True),
        ("2.10.1", ">=2.3,<3", True),
        ("2.2.9", ">=2.3,<3", False),
        ("3.0.0", ">=2.3,<3", False),
        ("3.11.7", ">=3.11", True),
        ("3.10.14", ">=3.11", False),
        ("2.3.0rc1", ">=2.3", True),  # release numbers only: a pre-release counts as its release
        ("1.2.3", "==1.2", True),
        ("1.3.0", "!=1.3", False),
    ],
)
def test_version_specifiers(version: str, spec: str, ok: bool) -> None:
    assert doctor.satisfies(version, spec) is ok


def test_doctor_with_sandbox_checks_against_the_embedded_sandbox_and_says_so() -> None:
    """Whatever the environment holds (a wrong key, an unreachable Retab), `--sandbox` checks
    the sandbox as `retab-mcp --sandbox` would use it."""
    done = subprocess.run(
        [*SERVER_COMMAND, "doctor", "--sandbox"],
        env=clean_env(RETAB_API_KEY="rt_live_revoked_0000", RETAB_API_BASE_URL="http://127.0.0.1:9"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert done.stderr == ""
    assert "Against the embedded Retab sandbox at http://127.0.0.1:" in done.stdout
    run = Run(done.returncode, done.stdout)
    assert (run.status("reachable"), run.status("auth")) == ("ok", "ok")
    assert "rt_live_revoked_0000" not in done.stdout
