"""Pub/Sub event bus on google-cloud-pubsub.

Publishing waits for the server's acknowledgement, so "published" means
"stored by Pub/Sub". Dead letters live on ``<topic><DEAD_LETTER_SUFFIX>`` and are
read through its pull subscription; listing leases messages briefly and hands
them straight back (ack deadline 0). In production Terraform declares the
topology; ``ensure_*`` declares the same one on the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2

from shared.platform.ports import DeadLetter, NotFound, PushSubscription, RetryPolicy
from shared.platform.pubsub_push import check_attributes, encode_data

PUBLISH_TIMEOUT_SECONDS = 60
_DLQ_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetterSource"
_PULL_BATCH = 100
_FIRST_PULL_SECONDS = 2


def _seconds(value: float) -> duration_pb2.Duration:
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((value - whole) * 1e9)))


class PubSubEventBus:
    """EventBus on Pub/Sub topics of one project."""

    def __init__(self, project: str, dead_letter_suffix: str = "-dead-letter",
                 policy: RetryPolicy | None = None) -> None:
        self.project = project
        self.dead_letter_suffix = dead_letter_suffix
        self.policy = policy or RetryPolicy()
        self.publisher = pubsub_v1.PublisherClient()
        self._subscriber: pubsub_v1.SubscriberClient | None = None

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def _topic_path(self, topic: str) -> str:
        return self.publisher.topic_path(self.project, topic)

    def _dead_letter_subscription(self, topic: str) -> str:
        return self.subscriber.subscription_path(
            self.project, f"{topic}{self.dead_letter_suffix}-pull")

    # -- administration -------------------------------------------------------------

    def ensure_topic(self, topic: str) -> None:
        try:
            self.publisher.create_topic(request={"name": self._topic_path(topic)})
        except gexc.AlreadyExists:
            pass

    def _ensure_dead_letter_queue(self, topic: str) -> str:
        dlq = f"{topic}{self.dead_letter_suffix}"
        self.ensure_topic(dlq)
        try:
            self.subscriber.create_subscription(request={
                "name": self._dead_letter_subscription(topic), "topic": self._topic_path(dlq),
                "ack_deadline_seconds": 60})
        except gexc.AlreadyExists:
            pass
        return self._topic_path(dlq)

    def ensure_push_subscription(self, subscription: PushSubscription) -> None:
        self.ensure_topic(subscription.topic)
        p = self.policy
        request: dict[str, Any] = {
            "name": self.subscriber.subscription_path(self.project, subscription.name),
            "topic": self._topic_path(subscription.topic),
            "push_config": {"push_endpoint": subscription.endpoint},
            "ack_deadline_seconds": int(min(600, max(10, p.ack_deadline))),
            "retry_policy": {"minimum_backoff": _seconds(p.min_backoff),
                             "maximum_backoff": _seconds(p.max_backoff)},
            "dead_letter_policy": {"dead_letter_topic": self._ensure_dead_letter_queue(
                subscription.topic), "max_delivery_attempts": max(5, min(100, p.max_attempts))},
        }
        try:
            self.subscriber.create_subscription(request=request)
        except gexc.AlreadyExists:
            pass

    # -- publishing -----------------------------------------------------------------

    def publish(self, topic: str, data: Mapping[str, Any],
                attributes: Mapping[str, str] | None = None) -> str:
        future = self.publisher.publish(self._topic_path(topic), encode_data(data),
                                        **check_attributes(attributes))
        try:
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except gexc.NotFound as exc:
            raise NotFound(f"topic {topic!r} does not exist") from exc

    # -- dead letters ---------------------------------------------------------------

    def _pull_all(self, topic: str) -> Iterator[Any]:
        """Lease every message on the topic's dead-letter subscription, batch by batch."""
        seen: set[str] = set()
        first = True
        while True:
            # The first pull waits briefly, so an empty answer means "none"; later
            # pulls return at once to end the listing quickly.
            try:
                response = self.subscriber.pull(request={
                    "subscription": self._dead_letter_subscription(topic),
                    "max_messages": _PULL_BATCH, "return_immediately": not first},
                    timeout=_FIRST_PULL_SECONDS, retry=None)
            except gexc.DeadlineExceeded:
                return
            first = False
            fresh = [m for m in response.received_messages if m.message.message_id not in seen]
            if not fresh:
                return
            for received in fresh:
                seen.add(received.message.message_id)
                yield received

    def _release(self, topic: str, ack_ids: list[str]) -> None:
        if ack_ids:
            self.subscriber.modify_ack_deadline(request={
                "subscription": self._dead_letter_subscription(topic), "ack_ids": ack_ids,
                "ack_deadline_seconds": 0})

    @staticmethod
    def _as_dead_letter(topic: str, received: Any) -> DeadLetter:
        msg = received.message
        attrs = dict(msg.attributes)
        source = attrs.get(f"{_DLQ_ATTRIBUTE_PREFIX}Subscription", "")
        return DeadLetter(
            id=msg.message_id, topic=topic, subscription=source.rsplit("/", 1)[-1],
            data=json.loads(msg.data or b"{}"),
            attributes={k: v for k, v in attrs.items() if not k.startswith(_DLQ_ATTRIBUTE_PREFIX)},
            delivery_attempts=int(attrs.get(f"{_DLQ_ATTRIBUTE_PREFIX}DeliveryCount", "0")),
            message_id=msg.message_id)

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        received = list(self._pull_all(topic))
        self._release(topic, [r.ack_id for r in received])
        return [self._as_dead_letter(topic, r) for r in received]

    def replay_dead_letter(self, topic: str, dead_letter_id: str) -> str:
        received = list(self._pull_all(topic))
        match = next((r for r in received if r.message.message_id == dead_letter_id), None)
        self._release(topic, [r.ack_id for r in received if r is not match])
        if match is None:
            raise NotFound(f"no dead letter {dead_letter_id!r} on {topic!r}")
        letter = self._as_dead_letter(topic, match)
        new_id = self.publish(topic, letter.data,
                              {**letter.attributes, "replayed_from": letter.message_id})
        self.subscriber.acknowledge(request={"subscription": self._dead_letter_subscription(topic),
                                             "ack_ids": [match.ack_id]})
        return new_id
