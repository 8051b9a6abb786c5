"""``clinic bench`` cannot rot: tiny runs write well-formed JSON reports, and it imports without the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from interfaces.cli.main import main
from tests import services
from tests.kit import eventually

from benchmarks import end_to_end, idle, servers


def test_bench_writes_every_figure_beside_its_baseline(tmp_path, capsys):
    report = tmp_path / "bench.json"

    code = main(["bench", "--quick", "--only", "command_path_sqlite", "--json", str(report), "--scale", "0.02"])

    assert code == 0
    run = json.loads(report.read_text())
    assert run["quick"] is True and run["failed"] == {} and run["skipped"] == {}
    assert {"cpu_count", "cpu_model", "python", "eventsourcing", "postgresql", "redis_server", "date"} <= set(
        run["machine"])
    assert len(run["figures"]) == 3  # 1 thread, 8 threads, group commit
    for figure in run["figures"]:
        assert figure["baseline"] and figure["value"] > 0 and figure["baseline_value"] > 0
        assert abs(figure["ratio"] - figure["value"] / figure["baseline_value"]) < 1e-9
    header, _, *rows = capsys.readouterr().out.splitlines()
    assert [cell.strip() for cell in header.split("|")] == ["figure", "value", "baseline", "ratio", "target"]
    assert rows[0].startswith("command path, SQLite, 1 thread ")


def test_bench_skips_and_names_a_benchmark_whose_server_is_missing(tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(servers.POSTGRES, "port", str(port))
    report = tmp_path / "bench.json"

    code = main(["bench", "--quick", "--only", "command_path_postgres", "--json", str(report)])

    assert code == 0
    run = json.loads(report.read_text())
    assert run["figures"] == []
    assert f"PostgreSQL at 127.0.0.1:{port} is unreachable" in run["skipped"]["command_path_postgres"]
    assert "skipped command_path_postgres: PostgreSQL" in capsys.readouterr().out


def test_the_end_to_end_benchmarks_import_and_list_with_no_test_package_importable(tmp_path):
    # as from an installed product without the test extras: pytest and the tests package cannot be imported
    code = ("import sys\n"
            "for name in ('pytest', '_pytest', 'tests'):\n"
            "    sys.modules[name] = None\n"
            "import benchmarks.end_to_end, interfaces.local_deployment.deployment\n"
            "from interfaces.cli.main import main\n"
            "sys.exit(main(['bench', '--list']))\n")

    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    assert {"end_to_end_embedded", "end_to_end_distributed", "read_api"} <= listed


RUN_FIELDS = {"confirmed_per_s", "cpu_ms_per_booking", "p50_ms", "p99_ms", "offered_per_s",
              "cpu_ms_per_booking_by_process", "load_generator_cpu_ms_per_booking", "cpu_counted", "polls_per_booking"}


def test_every_end_to_end_run_carries_its_rate_cpu_and_latencies_as_json_fields(tmp_path):
    report = tmp_path / "bench.json"

    code = main(["bench", "--quick", "--only", "end_to_end_embedded", "--json", str(report), "--scale", "0.05"])

    assert code == 0
    run = json.loads(report.read_text())
    assert run["failed"] == {} and run["figures"]
    for figure in run["figures"]:
        assert RUN_FIELDS <= set(figure), figure["name"]
        assert figure["confirmed_per_s"] > 0 and figure["cpu_ms_per_booking"] >= 0, figure["name"]
        assert 0 < figure["p50_ms"] <= figure["p99_ms"], figure["name"]
        assert (figure["offered_per_s"] is None) == (figure["loop"] != "open"), figure["name"]
        assert figure["cpu_counted"] == ["clinic serve"]  # embedded: no server is used, none is counted
    by_name = {figure["name"].split(" (")[0]: figure for figure in run["figures"]}
    cpu = by_name["embedded: CPU per confirmed booking, all processes"]
    assert cpu["value"] == cpu["cpu_ms_per_booking"] > 0 and cpu["loop"] == "accept" and cpu["target"] == "≤ 1 ms"
    assert cpu["cpu_ms_per_booking_by_process"]["clinic serve"] == cpu["value"] == cpu["baseline_value"]
    assert cpu["polls_per_booking"] >= 1  # each booking was read at least once to see it decided
    assert by_name["embedded: confirmed/s at 50/s offered"]["offered_per_s"] == 50.0
    one = by_name["embedded: p50 accept → decided, one client"]
    assert one["clients"] == 1 and one["loop"] == "closed" and one["value"] == one["p50_ms"]


def test_an_idle_deployment_is_measured_beside_the_servers_alone():
    services.require_postgres()
    services.require_redis()
    with servers.postgres_database("smoke") as database:
        alone = idle.window(database, seconds=1.0)
        with end_to_end.embedded({}), idle.counters(database) as reader:
            settled = idle.settle(dict, database)  # clinic serve has started: its CPU stops moving; no queue, no commits
            before = reader.sample()
            _commit_and_ping(database, commits=3, pings=5)
            # a backend publishes its counts when it exits, a moment after the client disconnected
            after = eventually(lambda: _with_commits(reader, before, 3), timeout=15, what="the commits counted")
    still = settled | idle.rates(before, after)

    assert still["settled"] is True
    assert "clinic serve" in still["cpu_percent_by_process"] and "clinic serve" not in alone["cpu_percent_by_process"]
    assert 0 <= still["deployment_cpu_percent"] <= still["cpu_percent"] < 100 * (os.cpu_count() or 1)
    assert after.postgres["xact_commit"] - before.postgres["xact_commit"] >= 3 and still["postgres_xact_commit_per_s"] > 0
    assert after.redis_commands - before.redis_commands - 1 >= 5 and still["redis_commands_per_s"] > 0  # less our INFO
    figures = idle.figures(still, alone, tick_seconds=0.2)
    assert [f.unit for f in figures] == ["% of a core", "commits/s", "commands/s"]
    assert all(f.as_json()["idle"] == still and json.dumps(f.as_json()) for f in figures)


def _with_commits(reader: idle.Counters, before: idle.Sample, commits: int) -> idle.Sample | None:
    """A sample taken now, if the database's commit count has moved by ``commits`` since ``before``."""
    sample = reader.sample()
    return sample if sample.postgres["xact_commit"] >= before.postgres["xact_commit"] + commits else None


def _commit_and_ping(database: str, commits: int, pings: int) -> None:
    """``commits`` transactions in ``database``, ``pings`` Redis commands, each client then disconnected."""
    import psycopg
    import redis

    with psycopg.connect(servers.postgres_conninfo(database), autocommit=True) as conn:
        for _ in range(commits):
            conn.execute("SELECT 1")
    client = redis.Redis.from_url(servers.REDIS_URL)
    for _ in range(pings):
        client.ping()
    client.close()
