"""Which answers to a reader's start-offset request are worth asking again."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from execdist.relay.live_feed import _leaders_unknown


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.NOT_LEADER_FOR_PARTITION,  # seen for a topic created a moment before
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._NOENT,  # librdkafka's "No leaders found": the topic is not there yet
    ],
)
def test_leaders_not_known_yet_is_asked_again(code: int) -> None:
    assert _leaders_unknown(KafkaError(code))


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.INVALID_REQUEST]
)
def test_other_errors_are_not(code: int) -> None:
    assert not _leaders_unknown(KafkaError(code))
