"""The reliability suite uses the end-to-end fixtures: a real bangerd, helper and QEMU."""

from tests.e2e.conftest import banger, banger_env, image  # noqa: F401 - pytest fixtures
