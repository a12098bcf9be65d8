"""Images: sources make a root tree (Debian, OCI, a promoted VM); one pipeline finishes it."""

from __future__ import annotations

from collections.abc import Callable

# One line for a person: what a pull or a build is doing now.
Say = Callable[[str], None]
