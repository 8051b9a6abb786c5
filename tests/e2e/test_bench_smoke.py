"""``clinic bench`` cannot rot: a tiny run of a cheap benchmark writes a well-formed JSON report."""

from __future__ import annotations

import json
import socket

from interfaces.cli.main import main

from benchmarks import servers


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
