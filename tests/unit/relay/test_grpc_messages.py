"""The JSON of a confirmation as the gRPC Confirmation message."""

from __future__ import annotations

from dataclasses import replace

import orjson

from execdist.codecs.output import encode_json, with_sub_seq
from execdist.domain.model import Anomaly, AnomalyRule
from execdist.grpc.server import confirmation_message
from tests.unit.codecs.fixtures import sample_confirmation


def test_every_field_and_the_sub_seq_are_carried() -> None:
    body = sample_confirmation().to_dict()
    message = confirmation_message(with_sub_seq(encode_json(body), 7))
    assert message.sub_seq == 7
    assert message.exec_id == body["exec_id"] and message.seq == body["seq"]
    assert message.avg_px == body["avg_px"] and message.ref_exec_id == body["ref_exec_id"]
    assert not message.HasField("anomaly")  # null in the JSON: unset


def test_an_anomaly_becomes_its_message() -> None:
    anomaly = Anomaly(
        (AnomalyRule.PRICE_DEVIATION, AnomalyRule.SIZE_OUTLIER),
        {"symbol_vwap": "187.45", "size_ratio": "12.5"},
    )
    value = orjson.dumps(replace(sample_confirmation(), anomaly=anomaly).to_dict())
    message = confirmation_message(value)
    assert list(message.anomaly.rules) == ["PRICE_DEVIATION", "SIZE_OUTLIER"]
    assert dict(message.anomaly.details) == {"symbol_vwap": "187.45", "size_ratio": "12.5"}
