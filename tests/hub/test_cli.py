"""`harbour hub ...` as an operator runs it: real subprocesses, garbage arguments included."""

from __future__ import annotations

import json

import pytest

from .conftest import harbour

pytestmark = pytest.mark.integration


def test_add_site_prints_only_the_token_and_creates_dir(tmp_path):
    data = tmp_path / "new" / "hub"
    result = harbour("hub", "add-site", "ship-1", "--data", str(data))
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hbs_") and len(lines[0]) >= 47
    assert (data / "hub.db").exists()
    status = json.loads(harbour("hub", "status", "--data", str(data), "--format", "json").stdout)
    assert [s["site"] for s in status["sites"]] == ["ship-1"]


@pytest.mark.parametrize("args", [
    ["hub", "add-site", "Ship_1"], ["hub", "add-site", "../etc"], ["hub", "add-site", ""],
    ["hub", "add-site", "-x"], ["hub", "revoke-site", "UPPER"], ["hub", "run", "--listen", "nope"],
    ["hub", "run", "--listen", "127.0.0.1:99999"], ["hub", "query", "--format", "xml", "SELECT 1"],
    ["hub", "status", "--format", "yaml"], ["hub", "add-operator"], ["hub", "revoke-operator"],
    ["hub", "revoke-operator", "alice", "--token-file", "/nonexistent/token"],
])
def test_garbage_arguments_are_usage_errors(tmp_path, args):
    result = harbour(*args, "--data", str(tmp_path / "d"), check=False)
    assert result.returncode == 2, result
    assert "Error" in result.stderr and result.stdout == ""


def test_operator_errors_say_what_to_do(tmp_path):
    data = str(tmp_path / "d")
    harbour("hub", "add-site", "ship-1", "--data", data)
    again = harbour("hub", "add-site", "ship-1", "--data", data, check=False)
    assert again.returncode == 1 and "--rotate" in again.stderr
    ghost = harbour("hub", "revoke-site", "ghost", "--data", data, check=False)
    assert ghost.returncode == 1 and "not registered" in ghost.stderr
    bad_sql = harbour("hub", "query", "--data", data, "SELEC nonsense", check=False)
    assert bad_sql.returncode == 1 and "nothing has been merged" in bad_sql.stderr
    assert harbour("hub", "add-operator", "Bad Name", "--data", data, check=False).returncode == 1


def test_query_on_an_empty_hub(tmp_path):
    harbour("hub", "add-site", "ship-1", "--data", str(tmp_path / "d"))
    out = harbour("hub", "query", "--data", str(tmp_path / "d"), "--format", "csv", "SELECT 42 AS answer")
    assert out.stdout.splitlines() == ["answer", "42"]


@pytest.mark.parametrize("command", [["status"], ["query", "SELECT 1"], ["revoke-site", "ship-1"],
                                     ["revoke-operator", "alice"]])
def test_commands_that_need_a_hub_refuse_a_mistyped_data_dir_and_create_nothing(tmp_path, command):
    harbour("hub", "add-site", "ship-1", "--data", str(tmp_path / "hub-data"))
    typo = tmp_path / "hub-dtaa"
    result = harbour("hub", *command, "--data", str(typo), check=False)
    assert result.returncode == 1 and f"no hub in {typo}" in result.stderr and "--data" in result.stderr
    assert not typo.exists() and result.stdout == ""


def test_add_site_on_a_new_directory_says_it_set_up_a_hub(tmp_path):
    first = harbour("hub", "add-site", "ship-1", "--data", str(tmp_path / "d"))
    assert "set up a new hub" in first.stderr and first.stdout.startswith("hbs_")
    second = harbour("hub", "add-site", "ship-2", "--data", str(tmp_path / "d"))
    assert second.stderr == ""


def test_query_refuses_writing_sql_and_stops_at_its_timeout(tmp_path):
    data = str(tmp_path / "d")
    harbour("hub", "add-site", "ship-1", "--data", data)
    copy = harbour("hub", "query", "--data", data, "COPY (SELECT 1) TO '.tmp/x.csv'", check=False)
    assert copy.returncode == 1 and "only reading statements" in copy.stderr
    slow = harbour("hub", "query", "--data", data, "--timeout", "0.5",
                   "SELECT count(*) FROM range(1000000000) a, range(1000000000) b", check=False)
    assert slow.returncode == 1 and "--timeout" in slow.stderr


def test_config_file_and_environment(tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata = "{tmp_path / "from-file"}"\n')
    harbour("--help")
    harbour("--config", str(config), "hub", "add-site", "ship-1")
    assert (tmp_path / "from-file" / "hub.db").exists()
    harbour("hub", "add-site", "ship-2", "--config", str(config), env={"HARBOUR_HUB_DATA": str(tmp_path / "env")})
    assert (tmp_path / "env" / "hub.db").exists()  # the environment wins over the file
    harbour("hub", "add-site", "ship-3", "--config", str(config), "--data", str(tmp_path / "flag"),
            env={"HARBOUR_HUB_DATA": str(tmp_path / "env")})
    assert (tmp_path / "flag" / "hub.db").exists()  # the flag wins over both
    broken = tmp_path / "broken.toml"
    broken.write_text("[hub\n")
    assert harbour("hub", "status", "--config", str(broken), check=False).returncode == 2


def test_help_on_every_command():
    for command in ("run", "add-site", "revoke-site", "add-operator", "revoke-operator", "status", "query"):
        assert "--data" in harbour("hub", command, "--help").stdout
    revoke_help = harbour("hub", "revoke-operator", "--help").stdout
    assert "--token-file" in revoke_help and "sessions end" in revoke_help


def _fleet_reads(hub, token: str, session: dict) -> tuple[int, int, bool]:
    """What a holder of ``token`` and of the browser ``session`` gets: /v1/fleet, the page's data, the page."""
    api = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {token}"}).status
    page_data = hub.request("GET", "/ui/fleet.json", session).status
    return api, page_data, b"fleet-rows" in hub.request("GET", "/", session).body


def _login(hub, token: str) -> dict:
    answer = hub.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                         f"token={token}".encode())
    assert answer.status == 303, answer
    return {"Cookie": answer.headers["set-cookie"].split(";")[0]}


@pytest.mark.guarantee("G5")
def test_revoke_operator_stops_the_token_and_its_sessions_at_once_on_a_running_hub(hub, tmp_path):
    data = str(hub.data)
    alice, bob = hub.add_operator("alice"), hub.add_operator("bob")
    alice_session, bob_session = _login(hub, alice), _login(hub, bob)
    assert _fleet_reads(hub, alice, alice_session) == (200, 200, True)

    revoked = harbour("hub", "revoke-operator", "alice", "--data", data)
    assert revoked.stdout == "" and "revoked operator alice" in revoked.stderr and "--rotate" in revoked.stderr
    assert _fleet_reads(hub, alice, alice_session) == (401, 401, False)  # no restart, no wait
    assert _fleet_reads(hub, bob, bob_session) == (200, 200, True)  # only alice's
    assert hub.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                       f"token={alice}".encode()).status == 401
    again = harbour("hub", "revoke-operator", "alice", "--data", data)
    assert "already revoked" in again.stderr

    # A leaked token whose owner is unknown: revoked from a file (or stdin), never echoed back.
    leaked = tmp_path / "leaked.token"
    leaked.write_text(bob + "\n")
    by_token = harbour("hub", "revoke-operator", "--token-file", str(leaked), "--data", data)
    assert "revoked operator bob" in by_token.stderr and bob not in by_token.stderr
    assert _fleet_reads(hub, bob, bob_session) == (401, 401, False)

    # A new token for alice works, the old one and the old session stay dead.
    new = harbour("hub", "add-operator", "alice", "--rotate", "--data", data).stdout.strip()
    assert _fleet_reads(hub, new, _login(hub, new)) == (200, 200, True)
    assert _fleet_reads(hub, alice, alice_session) == (401, 401, False)


def test_revoke_operator_errors_name_what_is_wrong_and_leak_no_token(tmp_path):
    data = str(tmp_path / "d")
    site_token = harbour("hub", "add-site", "ship-1", "--data", data).stdout.strip()
    ghost = harbour("hub", "revoke-operator", "ghost", "--data", data, check=False)
    assert ghost.returncode == 1 and "'ghost' is not registered" in ghost.stderr and "add-operator" in ghost.stderr
    for token in ("hbo_" + "x" * 43, site_token, ""):
        token_file = tmp_path / "t"
        token_file.write_text(token)
        refused = harbour("hub", "revoke-operator", "--token-file", str(token_file), "--data", data, check=False)
        assert refused.returncode == 1 and "not a live operator token" in refused.stderr, refused
        assert (token or "hbo_") not in refused.stderr
    both = harbour("hub", "revoke-operator", "ghost", "--token-file", str(token_file), "--data", data, check=False)
    assert both.returncode == 2 and "one of the two" in both.stderr
