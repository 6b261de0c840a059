"""The Avro schemas of the contract, loaded from the repository's ``schemas/`` folder.

``schemas/*.avsc`` at the repository root are the one canonical copy (the contract says "The Avro
schemas live in schemas/"), so they are read from there rather than from a copy inside the
package that could drift. The folder is found relative to the installed ``execdist`` package:
``<execdist/__init__.py>/../../schemas``. That is right for a source checkout and for an editable
install (``pip install -e .``), which is how execdist is run. A plain wheel install does not
carry the folder; :func:`schema_dir` then raises :class:`SchemaFilesMissing` saying so.

Files are read on first use, never at import time, and cached for the life of the process.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastavro
from fastavro.types import Schema

import execdist
from execdist.codecs.errors import CodecError

__all__ = [
    "SCHEMA_NAMES",
    "ParsedSchema",
    "SchemaFilesMissing",
    "parsed_schema",
    "raw_schema",
    "schema_dir",
    "schema_path",
]

ParsedSchema = Schema
"""A schema as returned by :func:`fastavro.parse_schema`, ready for the fastavro readers/writers."""

SCHEMA_NAMES: Final = ("order", "execution", "confirmation", "status_event")
"""The schema files, by stem: ``schemas/<name>.avsc``."""


class SchemaFilesMissing(CodecError):
    """The ``schemas/`` folder or one of its files is not where the package expects it."""


def schema_dir() -> Path:
    """The folder holding the ``.avsc`` files: ``schemas/`` beside the ``execdist`` package."""
    folder = Path(execdist.__file__).resolve().parent.parent / "schemas"
    if not folder.is_dir():
        raise SchemaFilesMissing(
            f"the Avro schemas are expected in {folder} (the repository's schemas/ folder); "
            "run execdist from a source checkout or an editable install (pip install -e .)"
        )
    return folder


def schema_path(name: str) -> Path:
    """The path of ``schemas/<name>.avsc``; ``name`` is one of :data:`SCHEMA_NAMES`."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known schemas: {', '.join(SCHEMA_NAMES)}")
    path = schema_dir() / f"{name}.avsc"
    if not path.is_file():
        raise SchemaFilesMissing(f"the Avro schema file {path} is missing")
    return path


def raw_schema(name: str) -> dict[str, Any]:
    """The schema as written in its file: what is registered with the schema registry.

    A fresh copy each call, so a caller cannot change the cached one.
    """
    loaded: dict[str, Any] = json.loads(_schema_text(name))
    return loaded


def parsed_schema(name: str) -> ParsedSchema:
    """The schema parsed by fastavro, cached; treat it as read-only."""
    return _parsed(name)


@cache
def _schema_text(name: str) -> str:
    return schema_path(name).read_text(encoding="utf-8")


@cache
def _parsed(name: str) -> ParsedSchema:
    # Each file is self-contained (it defines its own enums), so each gets its own name space.
    return fastavro.parse_schema(json.loads(_schema_text(name)), named_schemas={})
