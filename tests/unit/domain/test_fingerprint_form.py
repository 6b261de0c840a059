"""The duplicate-detection digest keeps the form stored states were written with."""

from __future__ import annotations

import hashlib
import json

from hypothesis import assume, given
from hypothesis import strategies as st

from execdist.domain import InvalidRecord, content_fingerprint, parse_execution
from tests.unit.domain.fixtures import execution_record


def reference_digest(data: dict[str, object]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@given(venue=st.text(min_size=1, max_size=20), exec_id=st.from_regex(r"[A-Za-z0-9\-\x7f]{1,12}"))
def test_the_digest_equals_the_json_dumps_form_for_any_text(venue: str, exec_id: str) -> None:
    """Non-ASCII and control characters included: json.dumps escapes them, orjson does not
    always, and stored states hold digests of the json.dumps form."""
    try:
        record = parse_execution(execution_record(venue=venue, exec_id=exec_id))
    except InvalidRecord:
        assume(False)  # a value validation refuses has no digest to compare
        return
    assert content_fingerprint(record) == reference_digest(record.to_dict())


def test_a_non_ascii_execution_keeps_its_digest() -> None:
    record = parse_execution(execution_record(venue="Zürich Börse"))
    assert content_fingerprint(record) == reference_digest(record.to_dict())


def test_an_execution_with_the_del_character_keeps_its_digest() -> None:
    """DEL is ASCII, so orjson leaves it as it is, but json.dumps escapes it."""
    record = parse_execution(execution_record(venue="X\x7fNAS"))
    assert content_fingerprint(record) == reference_digest(record.to_dict())
