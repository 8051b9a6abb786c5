"""Observability adapters: structured logs, traces, metrics (built in the composition roots)."""
