"""The broker profile's reading of Java Flight Recorder samples (``jfr print`` output)."""

from bench.broker_profile import parse_samples

MARKERS = """
jdk.ExecutionSample {
  startTime = 19:01:02.311
  sampledThread = "data-plane-kafka-request-handler-3" (javaThreadId = 61)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.apache.kafka.storage.internals.log.LogSegment.append(long, MemoryRecords) line: 135
    kafka.log.UnifiedLog.append(MemoryRecords, AppendOrigin) line: 800
    kafka.server.KafkaApis.$anonfun$handleWriteTxnMarkersRequest$7(KafkaApis) line: 24
    kafka.server.KafkaApis.handleWriteTxnMarkersRequest(RequestChannel$Request) line: 23
    kafka.server.KafkaApis.handle(RequestChannel$Request, RequestLocal) line: 190
    ...
  ]
}
"""

FETCH_THEN_COMPLETED_PRODUCE = """
jdk.ExecutionSample {
  startTime = 19:01:02.321
  sampledThread = "data-plane-kafka-request-handler-0" (javaThreadId = 58)
  state = "STATE_RUNNABLE"
  stackTrace = [
    java.util.HashMap.getNode(Object) line: 568
    kafka.server.DelayedFetch.tryComplete() line: 90
    kafka.server.KafkaApis.handleProduceRequest(RequestChannel$Request, RequestLocal) line: 700
    kafka.server.KafkaApis.handleFetchRequest(RequestChannel$Request) line: 900
    kafka.server.KafkaApis.handle(RequestChannel$Request, RequestLocal) line: 160
  ]
}
"""

NETWORK = """
jdk.ExecutionSample {
  startTime = 19:01:02.331
  sampledThread = "data-plane-kafka-network-thread-1-ListenerName(PLAINTEXT)-PLAINTEXT-0" (id 52)
  state = "STATE_RUNNABLE"
  stackTrace = [
    kafka.network.RequestChannel$Request.updateRequestMetrics(long) line: 220
    kafka.network.Processor.processCompletedSends() line: 1200
  ]
}
"""

EMPTY_STACK = """
jdk.ExecutionSample {
  startTime = 19:01:02.341
  sampledThread = "JFR Periodic Tasks" (javaThreadId = 20)
  state = "STATE_RUNNABLE"
  stackTrace = [
  ]
}
"""


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
