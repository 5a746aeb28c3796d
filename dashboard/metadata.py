"""Fresh cluster metadata for ``GET /api/kafka``: one admin client asking every few seconds, only when asked.

kafka-python keeps its own metadata for up to 5 minutes (``metadata_max_age_ms``), far too long to
watch a leader move when a broker dies. So a :class:`MetadataWatch`, on a green thread of its own,
sends one DescribeCluster and one Metadata request (``allow_auto_topic_creation=False``: looking at
a ride topic that does not exist must not create it) every ``interval_s``, but only while someone
asked for the view in the last :data:`IDLE_AFTER_S`; a dashboard whose Kafka section nobody opens
makes no request at all, and holds no admin connection until the first one.

Kafka down costs nothing but a sentence: a failed look keeps the last answer and notes since when
Kafka has not answered (:class:`dashboard.kafka_view.ClusterState`); the client reconnects by itself
and is rebuilt by :func:`bus.clients.consume_until_stopped` if it ever raises something else. Every
wait is bounded (a bootstrap by ``BOOTSTRAP_TIMEOUT_MS``, a look by :data:`REQUEST_TIMEOUT_MS`, a request
for the view by its ``wait_s``), and under eventlet kafka-python's network thread is a green thread: a
dead broker blocks this watch's green thread at most, never the hub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError

from bus.clients import BOOTSTRAP_TIMEOUT_MS, consume_until_stopped
from dashboard.feed import RECONNECT_BACKOFF_MAX_MS
from dashboard.kafka_view import ClusterState, metadata_from
from fleet.settings import bootstrap_list

log = logging.getLogger(__name__)

# Nobody asked for this long (the page asks every 2 s while its Kafka section is open): stop asking Kafka.
IDLE_AFTER_S = 30.0
# A look at a dead broker gives up after this.
REQUEST_TIMEOUT_MS = 3000
# How often a request that woke the watch checks whether a fresh answer came.
WAIT_STEP_S = 0.05


class MetadataWatch:
    """Looks at the metadata of ``topics`` every ``interval_s`` while asked; :meth:`run` is its green thread."""

    def __init__(
        self,
        bootstrap: str,
        topics: tuple[str, ...],
        interval_s: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.time,
        admin_factory: Callable[[], KafkaAdminClient] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.interval_s = interval_s
        self.state = ClusterState()
        self.running = False
        self._sleep = sleep
        self._clock = clock
        self._admin_factory = admin_factory or self._new_admin
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._asked_at = -float("inf")  # monotonic time of the latest request for the view
        self._looked_at = -float("inf")  # monotonic time of the latest look, answered or not

    def latest(self, wait_s: float) -> ClusterState:
        """The state to show. A request that wakes an idle watch waits up to ``wait_s`` for a look newer than
        itself (what an idle watch holds may be minutes old); while the watch looks, its state is at most one
        interval old, or says since when Kafka has not answered, and is returned at once."""
        asked = time.monotonic()
        was_idle = self._idle(asked)
        self._asked_at = asked
        self._wake.set()
        deadline = asked + wait_s
        while was_idle and self.running and self._looked_at < asked and time.monotonic() < deadline:
            self._sleep(WAIT_STEP_S)
        return self.state

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Look until :meth:`stop`, connecting once someone asks and reconnecting as long as it takes."""
        self.running = True
        try:
            consume_until_stopped(
                self._connect_when_asked, self._watch, "metadata watch", self.bootstrap, self._stop, self._failed
            )
        finally:
            self.running = False

    def _connect_when_asked(self) -> KafkaAdminClient:
        """An admin client, built only once someone looks: kafka-python 3.0.12 leaks the I/O thread of every
        client whose bootstrap fails, so a dashboard nobody asks must not keep trying a dead broker."""
        while self._idle():
            if self._stop.is_set():
                raise KafkaConnectionError("metadata watch stopped")  # connect() sees the stop and gives up
            self._wait_for_request()
        try:
            return self._admin_factory()
        except KafkaError as e:  # connect() retries; meanwhile the view says that Kafka does not answer
            self._failed(e)
            raise

    def _new_admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap_list(self.bootstrap),
            client_id="dashboard-metadata",
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )

    def _watch(self, admin: KafkaAdminClient) -> None:
        while not self._stop.is_set():
            if self._idle():
                self._wait_for_request()
                continue
            self.look(admin)
            self._stop.wait(self.interval_s)

    def look(self, admin: KafkaAdminClient) -> None:
        """Ask for the brokers and the topics' partitions once; a failure keeps the last answer."""
        try:
            cluster = admin.describe_cluster()
            topics = admin.describe_topics(list(self.topics))
        except KafkaError as e:
            self._failed(e)
            return
        if self.state.unreachable_since is not None:
            log.info("metadata watch: Kafka at %s answers again", self.bootstrap)
        self.state = self.state.answered(metadata_from(cluster, topics), self._clock())
        self._looked_at = time.monotonic()

    def _failed(self, error: Exception) -> None:
        if self.state.unreachable_since is None:
            log.warning("metadata watch: Kafka at %s does not answer (%s)", self.bootstrap, type(error).__name__)
        name, text = type(error).__name__, str(error)
        reason = text if text.startswith(name) else f"{name}: {text}"  # KafkaError's text already names its class
        self.state = self.state.failed(reason, self._clock())
        self._looked_at = time.monotonic()

    def _idle(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self._asked_at > IDLE_AFTER_S

    def _wait_for_request(self) -> None:
        self._wake.wait(1.0)
        self._wake.clear()
