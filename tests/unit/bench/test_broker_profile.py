"""The broker profile's reading of Java Flight Recorder samples (``jfr print`` output)."""

from bench.broker_profile import parse_samples


def sample(thread: str, *frames: str) -> str:
    """One ``jdk.ExecutionSample`` as ``jfr print`` writes it, frames innermost first."""
    stack = "".join(f"    {frame} line: 10\n" for frame in frames)
    return (
        "jdk.ExecutionSample {\n"
        "  startTime = 19:01:02.311\n"
        f'  sampledThread = "{thread}" (javaThreadId = 61)\n'
        '  state = "STATE_RUNNABLE"\n'
        f"  stackTrace = [\n{stack}    ...\n  ]\n}}\n"
    )


MARKERS = sample(
    "data-plane-kafka-request-handler-3",
    "org.apache.kafka.storage.internals.log.LogSegment.append(long, MemoryRecords)",
    "kafka.server.KafkaApis.$anonfun$handleWriteTxnMarkersRequest$7(KafkaApis)",
    "kafka.server.KafkaApis.handleWriteTxnMarkersRequest(RequestChannel$Request)",
    "kafka.server.KafkaApis.handle(RequestChannel$Request, RequestLocal)",
)
FETCH_THEN_COMPLETED_PRODUCE = sample(
    "data-plane-kafka-request-handler-0",
    "java.util.HashMap.getNode(Object)",
    "kafka.server.DelayedFetch.tryComplete()",
    "kafka.server.KafkaApis.handleProduceRequest(RequestChannel$Request, RequestLocal)",
    "kafka.server.KafkaApis.handleFetchRequest(RequestChannel$Request)",
    "kafka.server.KafkaApis.handle(RequestChannel$Request, RequestLocal)",
)
NETWORK = sample(
    "data-plane-kafka-network-thread-1-ListenerName(PLAINTEXT)-PLAINTEXT-0",
    "kafka.network.RequestChannel$Request.updateRequestMetrics(long)",
    "kafka.network.Processor.processCompletedSends()",
)
EMPTY_STACK = sample("JFR Periodic Tasks")


def test_samples_are_counted_by_thread_request_handler_and_top_frame() -> None:
    profile = parse_samples(MARKERS + FETCH_THEN_COMPLETED_PRODUCE + MARKERS + NETWORK)

    assert profile.samples == 4
    # the outermost handler is the request's own, whatever it calls
    assert profile.handlers == {
        "handleWriteTxnMarkersRequest": 2,
        "handleFetchRequest": 1,
        "other": 1,
    }
    # thread numbers are folded, so the request handler pool is one row
    assert profile.threads["data-plane-kafka-request-handler-N"] == 3
    assert profile.top["org.apache.kafka.storage.internals.log.LogSegment.append"] == 2
    assert profile.share(profile.handlers, "handleWriteTxnMarkersRequest") == 0.5


def test_a_sample_without_frames_is_not_counted() -> None:
    profile = parse_samples(EMPTY_STACK + NETWORK)

    assert profile.samples == 1
    assert profile.share(profile.handlers, "other") == 1.0
    assert parse_samples("").share(profile.handlers, "other") == 0.0
