"""Firecracker's API spec (swagger 2.0), loaded for checking request bodies.

The spec is not copied into this repository: it is read from
``../shared/reference/firecracker-api.yaml`` beside the checkout (or
``$BANGER_FC_SPEC``), the copy the project keeps of upstream's
``src/firecracker/swagger/firecracker.yaml``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]


def spec_path() -> Path | None:
    given = os.environ.get("BANGER_FC_SPEC")
    candidates = [Path(given)] if given else []
    candidates.append(REPO.parent / "shared" / "reference" / "firecracker-api.yaml")
    return next((p for p in candidates if p.is_file()), None)


@functools.cache
def load() -> dict[str, Any]:
    path = spec_path()
    if path is None:
        raise FileNotFoundError("Firecracker's API spec (set BANGER_FC_SPEC)")
    return yaml.safe_load(path.read_text())


def body_definition(method: str, path_template: str) -> str | None:
    """The definition name of the body of ``method`` on ``path_template``."""
    operation = load()["paths"].get(path_template, {}).get(method.lower())
    if operation is None:
        return None
    for param in operation.get("parameters", []):
        if param.get("in") == "body":
            return str(param["schema"]["$ref"].rsplit("/", 1)[-1])
    return None


def problems(definition: str, body: object) -> list[str]:
    """What is wrong with ``body`` as a ``definition``: schema errors and unknown fields.

    The spec does not say ``additionalProperties: false``, but Firecracker
    refuses unknown fields (serde's deny_unknown_fields), so this does too.
    """
    definitions = load()["definitions"]
    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    validator = jsonschema.Draft4Validator(schema)
    found = [e.message for e in validator.iter_errors(body)]
    known = definitions[definition].get("properties", {})
    if isinstance(body, dict):
        found += [f"unknown field `{key}`" for key in body if key not in known]
    return found


def path_templates() -> list[str]:
    return list(load()["paths"])
