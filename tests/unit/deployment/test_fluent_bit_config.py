"""The log shipper's configuration holds together (no fluent-bit binary on Debian or PyPI to dry-run it).

Parsed as Fluent Bit's classic format: every filter and output matches an input's tag, every parser
named exists, the Kubernetes filter's tag prefix is the one the tail input produces, the input's glob
takes our pods' container logs, and Loki's labels are few, exist in the lines we really write, and
never include a per-request id.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import re
import sys
import threading
from pathlib import Path

import structlog

from domain.metadata import event_metadata
from infrastructure.observability.logging import configure_logging

ROOT = Path(__file__).resolve().parents[3] / "deployment" / "logging"
BUILT_IN_MULTILINE = {"cri", "docker", "go", "python", "java", "ruby"}
PER_REQUEST_FIELDS = {"correlation_id", "causation_id", "saga_id", "trace_id", "span_id", "message_id"}


def sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    """``[(SECTION, {lower-case key: value})]`` in file order; comments and blank lines skipped."""
    found: list[tuple[str, dict[str, str]]] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if header := re.fullmatch(r"\[([A-Z]+)\]", line):
            found.append((header.group(1), {}))
            continue
        assert found and raw.startswith("    "), f"{path.name}:{number}: a key outside a section, or not indented"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}:{number}: {key} has no value"
        assert key.lower() not in found[-1][1], f"{path.name}:{number}: {key} set twice"
        found[-1][1][key.lower()] = value.strip()
    return found


def of(kind: str, config: list[tuple[str, dict[str, str]]]) -> list[dict[str, str]]:
    return [entries for name, entries in config if name == kind]


CONFIG = sections(ROOT / "fluent-bit.conf")


def test_the_sections_are_known_and_each_plugin_named():
    assert {name for name, _ in CONFIG} <= {"SERVICE", "INPUT", "FILTER", "OUTPUT"}
    assert len(of("SERVICE", CONFIG)) == 1
    assert all("name" in entries for name, entries in CONFIG if name != "SERVICE")


def test_every_filter_and_output_matches_an_input_tag():
    tags = [entries["tag"] for entries in of("INPUT", CONFIG)]
    concrete = [tag.replace("*", "var.log.containers.pod_ns_container-0.log") for tag in tags]
    for entries in of("FILTER", CONFIG) + of("OUTPUT", CONFIG):
        assert any(fnmatch.fnmatchcase(tag, entries["match"]) for tag in concrete), entries


def test_every_parser_named_exists():
    parsers_file = ROOT / of("SERVICE", CONFIG)[0]["parsers_file"]
    defined = {entries["name"] for entries in of("PARSER", sections(parsers_file))}
    assert all(entries["format"] in {"json", "regex", "logfmt", "ltsv"} for entries in of("PARSER", sections(
        parsers_file)))
    for _, entries in CONFIG:
        if "parser" in entries:
            assert entries["parser"] in defined, entries
        if "multiline.parser" in entries:
            names = {name.strip() for name in entries["multiline.parser"].split(",")}
            assert names <= BUILT_IN_MULTILINE | defined, entries


def test_the_kubernetes_filter_prefix_is_what_the_tail_input_makes_of_the_path():
    [tail] = [entries for entries in of("INPUT", CONFIG) if entries["name"] == "tail"]
    [kubernetes] = [entries for entries in of("FILTER", CONFIG) if entries["name"] == "kubernetes"]
    directory = tail["path"].rsplit("/", 1)[0]
    assert kubernetes["kube_tag_prefix"] == tail["tag"].rstrip("*") + directory.strip("/").replace("/", ".") + "."
    # the kubelet names files <pod>_<namespace>_<container>-<container id>.log
    assert fnmatch.fnmatchcase(f"{directory}/clinic-booking-5d8f9c7b6-x2v4q_clinic_booking-{'a' * 64}.log",
                               tail["path"])
    assert not fnmatch.fnmatchcase(f"{directory}/coredns-5d78c9869d-abcde_kube-system_coredns-{'b' * 64}.log",
                                   tail["path"])


def test_loki_labels_are_few_exist_in_our_lines_and_are_never_per_request_ids():
    [loki] = [entries for entries in of("OUTPUT", CONFIG) if entries["name"] == "loki"]
    labels = dict(item.strip().split("=", 1) for item in loki["labels"].split(","))
    assert set(labels) == {"job", "namespace", "service", "level"}
    assert not PER_REQUEST_FIELDS & set(labels) and "label_keys" not in loki
    accessors = [value[1:] for value in labels.values() if value.startswith("$")]
    assert "kubernetes['namespace_name']" in accessors  # added by the kubernetes filter
    line = _a_real_line()
    for key in (a for a in accessors if not a.startswith("kubernetes")):
        assert key in line, f"label ${key} is not a field of our lines: {sorted(line)}"
    assert PER_REQUEST_FIELDS - {"message_id"} <= line.keys() | {"trace_id", "span_id"}


def _a_real_line() -> dict:
    """One line as a service writes it (the parser's input, after the runtime's CRI prefix)."""
    buffer, root = io.StringIO(), logging.getLogger()
    before, level, hooks = list(root.handlers), root.level, (sys.excepthook, threading.excepthook)
    try:
        configure_logging("booking", stream=buffer)
        with event_metadata(correlation_id="c-1", causation_id="e@1", saga_id="s-1"):
            logging.getLogger("clinic.test").info("saga started")
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        structlog.reset_defaults()
        root.setLevel(level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook = hooks
    return json.loads(buffer.getvalue())
