"""The JSON Schemas of the JSON-RPC 2.0 envelope, as shipped with the package.

They live in ``schemas/`` at the top of the repository and inside the wheel as
``safe_rpc/schemas/``. At runtime the dispatcher uses the equivalent hand-written checks of
``_protocol``; the schemas are the reference those checks are tested against, and what
:func:`validate` uses for callers that want a second opinion.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_NAMES", "load_schema", "validate"]

SCHEMA_NAMES = (
    "batch-request",
    "batch-response",
    "error",
    "id",
    "message",
    "request",
    "response",
)


def _schema_dir() -> Path:
    packaged = resources.files("safe_rpc").joinpath("schemas")
    if packaged.is_dir():  # an installed wheel
        return Path(str(packaged))
    # An editable install or a source checkout: the top-level schemas/ directory.
    return Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema called ``name`` (one of ``SCHEMA_NAMES``), as a dict.

    Raises:
        ValueError: for an unknown name (names never come from the wire).
    """
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; choose from {', '.join(SCHEMA_NAMES)}")
    text = (_schema_dir() / f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry().with_resources(
        (load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in SCHEMA_NAMES
    )
    return jsonschema.Draft202012Validator(load_schema(name), registry=registry)


def validate(instance: Any, name: str) -> None:
    """Validate a parsed JSON value against the schema ``name`` with ``jsonschema``.

    ``jsonschema`` is not a run-time dependency of safe_rpc (the test extra installs it);
    the dispatcher never calls this.

    Raises:
        jsonschema.ValidationError: if the instance does not conform.
    """
    _validator(name).validate(instance)
