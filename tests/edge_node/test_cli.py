"""``harbour edge run|status|query`` as an operator uses them."""

import json
import subprocess
import sys

import pyarrow as pa
import pytest
from click.testing import CliRunner

from harbour_cli import cli


def edge_invoke(args):
    """The edge group as installed: with the --config and HARBOUR_EDGE_* wiring harbour_cli adds."""
    return CliRunner().invoke(cli, ["edge", *args])

pytestmark = pytest.mark.integration


def harbour(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harbour_cli", *args], capture_output=True, text=True, timeout=60)


def test_run_help_explains_every_option():
    text = edge_invoke(["run", "--help"]).output
    for option in ("--site", "--data", "--listen", "--hub", "--token", "--token-file", "--max-disk", "--seal-size",
                   "--seal-age", "--retention", "--priority", "--max-body", "--config"):
        assert option in text, option
    assert "507" in text and "HARBOUR_EDGE_" in text


@pytest.mark.parametrize(("args", "says"), [
    (["--max-disk", "lots"], "not a size"),
    (["--seal-age", "soon"], "not a duration"),
    (["--listen", "8701"], "HOST:PORT"),
    (["--priority", "alarms=high"], "NAME=N"),
])
def test_run_refuses_bad_options_clearly(tmp_path, args, says):
    result = edge_invoke(["run", "--site", "s", "--data", str(tmp_path), *args])
    assert result.exit_code != 0 and says in result.output


def test_run_refuses_a_bad_site_and_a_foreign_data_dir(tmp_path, start_edge):
    result = harbour("edge", "run", "--site", "Bad Site", "--data", str(tmp_path / "d"))
    assert result.returncode != 0 and "site id" in result.stderr
    start_edge(tmp_path / "d", site="ship-1").stop()
    result = harbour("edge", "run", "--site", "ship-2", "--data", str(tmp_path / "d"))
    assert result.returncode != 0 and "belongs to site 'ship-1'" in result.stderr


def test_config_file_and_environment(tmp_path, start_edge, http):
    config = tmp_path / "edge.toml"
    config.write_text('[edge]\nsite = "from-file"\nmax-body = "1KiB"\n')
    process = start_edge(tmp_path / "d", "--config", str(config), site="from-flag")
    status, report = http.get(process.url, "/v1/status")
    assert report["site"] == "from-flag"  # the flag wins over the file
    status, answer = http.post(process.url, "t", http.arrow(pa.table({"v": list(range(1000))})))
    assert status == 413  # max-body came from the file


def test_status_and_query_next_to_a_running_node(tmp_path, start_edge, http):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    process = start_edge(tmp_path / "d", "--hub", "http://hub.invalid", "--token-file", str(token))
    http.post(process.url, "telemetry", http.arrow(pa.table({"v": [1, 2, 3], "s": ["a", "b", "c"]})))
    status = harbour("edge", "status", "--data", str(tmp_path / "d"), "--format", "json")
    assert status.returncode == 0, status.stderr
    (table,) = json.loads(status.stdout)["tables"]
    assert table["table"] == "telemetry" and table["pending_rows"] == 3
    text = harbour("edge", "status", "--data", str(tmp_path / "d")).stdout
    assert "telemetry" in text and "pending rows" in text
    for fmt, expected in [("table", "(3 rows)"), ("csv", '"v","s","_site"'), ("json", '"_site": "ship-1"')]:
        result = harbour("edge", "query", "--data", str(tmp_path / "d"), "--format", fmt, "SELECT * FROM telemetry")
        assert result.returncode == 0 and expected in result.stdout, (fmt, result.stdout, result.stderr)
    bad = harbour("edge", "query", "--data", str(tmp_path / "d"), "SELECT * FROM nowhere")
    assert bad.returncode == 1 and "nowhere" in bad.stderr
    assert "secret-token" not in process.stderr()
    assert process.stop() == 0  # SIGTERM stops it cleanly


def test_status_asks_the_running_node_and_says_when_it_reads_the_disk(tmp_path, start_edge, http):
    data = tmp_path / "d"
    process = start_edge(data, "--hub", "http://127.0.0.1:9", "--token", "not-checked")  # nothing listens on 9
    http.post(process.url, "telemetry", http.arrow(pa.table({"v": [1, 2, 3]})))
    text = harbour("edge", "status", "--data", str(data))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"site ship-1 (asked the running node at {process.url})"
    assert lines[1].startswith("link: ") and "(to http://127.0.0.1:9)" in lines[1]
    as_json = json.loads(harbour("edge", "status", "--data", str(data), "--format", "json").stdout)
    assert as_json["source"] == "node" and as_json["sync"]["hub"] == "http://127.0.0.1:9"
    process.stop()
    offline = harbour("edge", "status", "--data", str(data)).stdout.splitlines()
    assert offline[0] == "site ship-1 (read from disk)"
    assert offline[1] == f"link: unknown -- read from disk: no node is running on {data}"


def test_status_on_a_mistyped_directory_is_an_error_and_creates_nothing(tmp_path):
    result = harbour("edge", "status", "--data", str(tmp_path / "ship-dtaa"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "ship-dtaa").exists()


def test_status_watch_redraws_until_stopped(tmp_path, start_edge):
    data = tmp_path / "d"
    start_edge(data).stop()
    watching = subprocess.Popen([sys.executable, "-m", "harbour_cli", "edge", "status", "--data", str(data),
                                 "--watch", "--interval", "0.3"], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = watching.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        watching.terminate()
        out, _ = watching.communicate(timeout=10)
    assert out.count("(every 0.3 s; Ctrl-C stops)") >= 3 and out.count("site ship-1") >= 3


def test_query_counts_rows_in_words_and_refuses_a_mistyped_directory(tmp_path, start_edge):
    start_edge(tmp_path / "d").stop()
    one = harbour("edge", "query", "--data", str(tmp_path / "d"), "SELECT 1 AS x")
    assert one.returncode == 0 and one.stdout.rstrip().endswith("(1 row)"), one.stdout
    typo = harbour("edge", "query", "--data", str(tmp_path / "dd"), "SELECT 1")
    assert typo.returncode == 2 and "does not exist" in typo.stderr and not (tmp_path / "dd").exists()
