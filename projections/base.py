"""What a projection is: a name, a version, the applications it reads, and a pure function."""

from __future__ import annotations

from typing import Any, Protocol

from projections.ops import Op


class Projection(Protocol):
    """Turns events into view changes; never loads aggregates, never issues commands."""

    @property
    def name(self) -> str:
        """Stable name, used in keys and by operators (``clinic projections rebuild <name>``)."""

    @property
    def version(self) -> int:
        """Bumped when ``changes`` changes: a new version is built into fresh keys."""

    @property
    def leaders(self) -> tuple[str, ...]:
        """The applications whose notification logs it reads (e.g. ``("Consultations",)``)."""

    def changes(self, event: Any) -> list[Op]:
        """The view changes ``event`` makes (``[]`` for events it ignores)."""
        ...
