"""Driven adapters: messaging (RabbitMQ), TLS, the registry's HTTP client.

Layering: ``application`` (the composition root) wires these; they implement ports of
``process_managers`` and use the eventsourcing applications, never ``interfaces``.
"""
