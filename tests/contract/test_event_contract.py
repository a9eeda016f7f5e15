"""The EventBus contract, run against the embedded bus and Pub/Sub (emulator).

Both push to the same functions-framework CloudEvent function served on
127.0.0.1, so the assertions are about the event a handler really receives.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import uuid

import functions_framework
import pytest

from shared.platform.backends.local_events import LocalEventBus
from shared.platform.ports import NotFound, PushSubscription, RetryPolicy
from shared.platform.pubsub_push import MESSAGE_PUBLISHED, decode_event
from tests.support.bus import (
    RECEIVER_SOURCE,
    pubsub_event,
    pump_until,
    push_body,
    received_for,
    subscribe,
    topic_path,
    unsubscribe,
)


@pytest.fixture
def subscribed(backends, settings, receiver):
    """A push subscription on the data-ready topic to the receiver; yields (events, topic, module)."""
    module, url = receiver
    topic = settings.topic_data_ready
    name = subscribe(backends, settings, url, topic)
    yield backends.events, topic, module
    unsubscribe(settings, name)


def test_subscriber_receives_the_pubsub_cloudevent(subscribed, settings):
    events, topic, module = subscribed
    key = uuid.uuid4().hex
    payload = {"batch_id": "b-1", "rows": 144, "score": 0.98, "range": ["2017-01-01", "2017-01-02"]}
    message_id = events.publish(topic, payload, {"key": key, "source": "replay"})
    pump_until(events, lambda: received_for(module, key))
    (got,) = received_for(module, key)
    attrs = got["attributes"]
    assert attrs["type"] == MESSAGE_PUBLISHED
    assert attrs["source"] == f"//pubsub.googleapis.com/projects/{settings.project}/topics/{topic}"
    assert attrs["id"] == message_id
    message = got["data"]["message"]
    assert json.loads(base64.b64decode(message["data"])) == payload
    assert message["attributes"] == {"key": key, "source": "replay"}
    assert message["messageId"] == message_id
    assert message["publishTime"].endswith("Z") and attrs["time"] == message["publishTime"]


def test_decode_event_reads_what_was_published(subscribed):
    events, topic, module = subscribed
    key = uuid.uuid4().hex
    message_id = events.publish(topic, {"n": 1}, {"key": key})
    pump_until(events, lambda: received_for(module, key))

    class Event(dict):
        data = received_for(module, key)[0]["data"]

    decoded = decode_event(Event(received_for(module, key)[0]["attributes"]))
    assert (decoded.id, decoded.data, decoded.attributes) == (message_id, {"n": 1}, {"key": key})


def test_failed_delivery_is_retried_then_dead_lettered_and_replayable(subscribed, settings):
    events, topic, module = subscribed
    key = uuid.uuid4().hex
    module.FAILING.add(key)
    try:
        message_id = events.publish(topic, {"will": "fail"}, {"key": key})
        pump_until(events, lambda: len(received_for(module, key)) >= 5, timeout=90)
        pump_until(events, lambda: any(d.attributes.get("key") == key
                                       for d in events.dead_letters(topic)), timeout=60)
    finally:
        module.FAILING.discard(key)
    (letter,) = [d for d in events.dead_letters(topic) if d.attributes.get("key") == key]
    assert letter.data == {"will": "fail"}
    assert letter.subscription == f"{topic}-to-receiver"
    assert letter.delivery_attempts == settings.event_max_delivery_attempts
    attempts = len(received_for(module, key))
    assert attempts == settings.event_max_delivery_attempts
    if settings.backend == "embedded":
        assert letter.message_id == message_id

    new_id = events.replay_dead_letter(topic, letter.id)
    pump_until(events, lambda: len(received_for(module, key)) > attempts)
    replayed = received_for(module, key)[-1]["data"]["message"]
    assert replayed["messageId"] == new_id
    assert replayed["attributes"] == {"key": key, "replayed_from": letter.message_id}
    assert not [d for d in events.dead_letters(topic) if d.attributes.get("key") == key]


def test_replaying_an_unknown_dead_letter_raises(subscribed):
    events, topic, _ = subscribed
    with pytest.raises(NotFound):
        events.replay_dead_letter(topic, "no-such-letter")


def test_attributes_must_be_strings(backends, settings):
    with pytest.raises(TypeError):
        backends.events.publish(settings.topic_alerts, {"x": 1}, {"count": 3})


def test_publishing_to_a_missing_topic_raises(backends):
    with pytest.raises(NotFound):
        backends.events.publish("no-such-topic-" + uuid.uuid4().hex[:6], {"x": 1})


def test_embedded_bus_waits_the_doubling_backoff_between_attempts(tmp_path, receiver):
    module, url = receiver
    policy = RetryPolicy(max_attempts=4, min_backoff=0.2, max_backoff=0.5)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.5]  # doubles, up to the ceiling
    bus = LocalEventBus(tmp_path / "bus.sqlite", "test-project", policy)
    bus.ensure_push_subscription(PushSubscription("s", "data-ready",
                                                  f"{url}/projects/test-project/topics/data-ready"))
    key = uuid.uuid4().hex
    module.FAILING.add(key)
    try:
        bus.publish("data-ready", {"a": 1}, {"key": key})
        bus.drain(timeout=60)
    finally:
        module.FAILING.discard(key)
    times = [r["received_at"] for r in received_for(module, key)]
    assert len(times) == policy.max_attempts
    # Lower bounds only: a loaded machine makes the gaps longer, never shorter.
    for attempt, (before, after) in enumerate(itertools.pairwise(times), start=1):
        assert after - before >= policy.backoff(attempt), (attempt, after - before)


def test_the_test_helper_builds_the_event_functions_framework_delivers():
    """``pubsub_event`` (used to drive handlers directly) equals what a served function receives."""
    app = functions_framework.create_app("receive", str(RECEIVER_SOURCE), "cloudevent")
    module = sys.modules["push_receiver"]  # the app's own copy of the receiver module
    key = uuid.uuid4().hex
    body = push_body({"batch_id": "b-9"}, "m-9", {"key": key}, publish_time="2017-01-29T00:00:00.000Z",
                     subscription="projects/test-project/subscriptions/s")
    assert app.test_client().post(topic_path("test-project", "data-ready"), json=body).status_code == 200
    (got,) = received_for(module, key)
    event = pubsub_event({"batch_id": "b-9"}, "m-9", "data-ready", "test-project", {"key": key})
    assert got["data"] == {**event.data, "message": {**event.data["message"],
                                                     "publishTime": "2017-01-29T00:00:00.000Z"}}
    assert {k: v for k, v in got["attributes"].items() if k != "time"} == \
        {k: v for k, v in event.get_attributes().items() if k != "time"}
    assert decode_event(event).data == {"batch_id": "b-9"}


def test_embedded_messages_survive_a_new_bus_instance(tmp_path, receiver):
    """Published means stored: a dispatcher started later still delivers."""
    module, url = receiver
    path = tmp_path / "bus.sqlite"
    first = LocalEventBus(path, "test-project")
    first.ensure_push_subscription(PushSubscription("s", "data-ready",
                                                    f"{url}/projects/test-project/topics/data-ready"))
    key = uuid.uuid4().hex
    first.publish("data-ready", {"a": 1}, {"key": key})
    del first
    second = LocalEventBus(path, "test-project")
    assert second.pending() == 1
    second.drain(timeout=10)
    assert len(received_for(module, key)) == 1
