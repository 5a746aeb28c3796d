"""Kafka's promises under faults: brokers killed, restarted one by one or bounced, processes killed, and
nothing acknowledged lost, nothing answered twice.

Each test runs the real simulator (fixes numbered per driver by ``seq``, riders asking for rides), the
real matcher and, where it matters, the real dashboard; injects one fault; then reads every topic back
from the beginning and checks what the processes said they did against what Kafka holds. The figures
each test prints are the ones docs/reliability.md reports.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kafka.errors import KafkaError

from bench.common import read_summary, simulator_commands
from broker.cluster import LocalCluster, admin_client, partition_replicas, wait_fully_replicated
from broker.local import LocalBroker
from tests import test_page_browser as page_tests
from tests.stack import (
    HealthWatch,
    Process,
    TopicReader,
    Topics,
    all_drivers,
    answers_of,
    assert_no_traceback,
    committed_to_the_end,
    panel_shows_down,
    panel_shows_whole,
    start_dashboard,
    start_matcher,
)
from tests.test_dashboard import wait_until

# ---- a fleet under load on its own topics, and what reached Kafka


@dataclass
class Outcome:
    """What the simulator said it did, and what Kafka holds."""

    summary: dict
    fixes: list[tuple[str, int]] = field(default_factory=list)  # (driver, seq) of every record, in no order
    requests: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)  # request id -> committed answers

    def report(self, fault: str, recovery_s: float | None = None) -> str:
        found = len(set(self.fixes))
        s = self.summary
        line = (
            f"{fault}: sent {s['sent']}, acknowledged {s['acknowledged']}, failed {s['failed']}, found {found}, "
            f"duplicates {len(self.fixes) - found}, lost {max(0, s['acknowledged'] - found)}; requests "
            f"{len(self.requests)}, answered once {sum(1 for r in self.requests if self.answers[r] == 1)}"
        )
        if recovery_s is not None:
            line += f"; dashboard healthy again {recovery_s:.1f} s after the fault"
        return line


class Fleet:
    """A simulator (``drivers`` fixes/s, ``riders`` requests/s), a matcher and optionally a dashboard."""

    def __init__(self, bootstrap: str, name: str, dashboard: bool = True, matcher: bool = True) -> None:
        self.bootstrap = bootstrap
        self.name = name
        with admin_client(bootstrap) as admin:
            self.topics = Topics.create(admin, f"fault-{name}")
        self.dashboard: Process | None = None
        self.base = ""
        if dashboard:
            self.dashboard, self.base = start_dashboard(bootstrap, self.topics, f"fault-{name}")
        self.matcher = start_matcher(bootstrap, self.topics, f"fault-{name}") if matcher else None
        self.simulator: Process | None = None

    def drive(self, drivers: int, riders_per_s: float, seconds: float) -> Process:
        [command] = simulator_commands(
            drivers,
            self.topics.drivers,
            self.bootstrap,
            seconds,
            processes=1,
            extra=[
                *("--riders-per-minute", f"{riders_per_s * 60:g}"),
                *("--request-topic", self.topics.requests, "--match-topic", self.topics.matches),
            ],
        )
        self.simulator = Process(f"fault-{self.name}-simulator", command)
        self.simulator.log_path.unlink(missing_ok=True)
        return self.simulator.start()

    def restart_matcher(self) -> None:
        self.matcher = start_matcher(self.bootstrap, self.topics, f"fault-{self.name}", fresh_log=False)

    def finish(self, timeout_s: float = 120, now: bool = False) -> Outcome:
        """Wait for the simulator's run to end (``now``: end it with SIGTERM, which still waits for every fix to
        be acknowledged), the matcher to commit every request, and read it all back."""
        assert self.simulator is not None and self.simulator.popen is not None
        if now:
            self.simulator.popen.send_signal(signal.SIGTERM)
        self.simulator.popen.wait(timeout=timeout_s)
        summary = read_summary(self.simulator.log())
        assert summary is not None, f"the simulator printed no summary:\n{self.simulator.log()[-2000:]}"
        wait_until(self.all_requests_committed, 60, "the matcher committed an answer to every request")
        outcome = Outcome(summary)
        fixes = TopicReader(self.bootstrap, self.topics.drivers)
        for record in fixes.read_to_end():
            fix = json.loads(record.value)
            outcome.fixes.append((fix["driver_id"], fix["seq"]))
        fixes.close()
        requests = TopicReader(self.bootstrap, self.topics.requests)
        outcome.requests = {json.loads(r.value)["request_id"] for r in requests.read_to_end()}
        requests.close()
        answers = TopicReader(self.bootstrap, self.topics.matches)  # read_committed
        outcome.answers = Counter(m.request_id for m in answers_of(answers.read_to_end()))
        answers.close()
        return outcome

    def all_requests_committed(self) -> bool:
        """Whether the matcher's group committed every request; asked with a fresh admin client each time, since
        one from before a broker's restart may keep failing to find the group's coordinator."""
        try:
            with admin_client(self.bootstrap) as admin:
                return committed_to_the_end(admin, self.bootstrap, self.topics.tag, self.topics.requests)
        except KafkaError:
            return False

    def stop(self) -> None:
        for process in (self.simulator, self.matcher, self.dashboard):
            if process is not None:
                process.stop()
        # Fresh clients, tried again: one whose metadata dates from before a node came back may name a
        # controller it does not know (UnknownBrokerIdError).
        for attempt in range(3):
            try:
                with admin_client(self.bootstrap, timeout_s=15) as admin:
                    self.topics.delete(admin)
                return
            except KafkaError:
                if attempt == 2:
                    raise
                time.sleep(2)


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    """Fleets a test made, stopped and their topics deleted after it, passed or failed."""
    made: list[Fleet] = []
    yield made
    for fleet in made:
        fleet.stop()


def assert_nothing_lost(outcome: Outcome, drivers: int) -> None:
    s = outcome.summary
    assert s["sent"] == s["acknowledged"] + s["failed"], f"every fix sent was answered by Kafka: {s}"
    assert s["acknowledged"] > 0
    counts = Counter(outcome.fixes)
    duplicates = {pair: n for pair, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} (driver, seq) pairs written twice, e.g. {list(duplicates)[:3]}"
    assert len(counts) >= s["acknowledged"], f"{s['acknowledged'] - len(counts)} acknowledged fixes are missing"
    assert len(counts) <= s["sent"]
    seqs: dict[str, list[int]] = {}
    for driver_id, seq in counts:
        seqs.setdefault(driver_id, []).append(seq)
    assert len(seqs) == drivers, f"fixes of {len(seqs)} drivers, not {drivers}"
    if s["failed"] == 0:
        # Nothing refused: each driver's numbers run from 0 without a gap, so no acknowledged fix is missing.
        gaps = {d: sorted(n) for d, n in seqs.items() if sorted(n) != list(range(len(n)))}
        assert not gaps, f"{len(gaps)} drivers have gaps in their seq numbers"


def assert_answered_exactly_once(outcome: Outcome) -> None:
    assert len(outcome.requests) > 0
    wrong = {r: outcome.answers[r] for r in outcome.requests if outcome.answers[r] != 1}
    assert not wrong, (
        f"{len(wrong)} of {len(outcome.requests)} requests not answered exactly once: {list(wrong.items())[:5]}"
    )
    assert set(outcome.answers) <= outcome.requests, "an answer to a request nobody made"


def leader_of_the_busy_partitions(bootstrap: str, topics: Topics) -> tuple[int, int, int]:
    """(node, driver-location partition, ride-requests partition): a node leading a partition of each, the
    ride-requests partition being one the riders write to (requests are keyed by city area)."""
    with admin_client(bootstrap) as admin:
        replicas = partition_replicas(admin, [topics.drivers, topics.requests])
    reader = TopicReader(bootstrap, topics.requests)
    busy = {r.partition for r in reader.read(lambda records: len(records) > 0, 30, "riders ask for rides")}
    reader.close()
    [request_partition] = [p for p in replicas if p.topic == topics.requests and p.partition in busy][:1]
    node = request_partition.leader
    led = [p.partition for p in replicas if p.topic == topics.drivers and p.leader == node]
    assert led, f"node {node} leads no partition of {topics.drivers}: {replicas}"
    return node, led[0], request_partition.partition


def leader_now(bootstrap: str, topic: str, partition: int) -> int | None:
    """The partition's leader; None when the question went to the node just killed (kafka-python sends an
    admin request to a node the metadata still lists, and that node refuses the connection)."""
    try:
        with admin_client(bootstrap) as admin:
            [p] = [p for p in partition_replicas(admin, [topic]) if p.partition == partition]
    except KafkaError:
        return None
    return p.leader


def healthy_again_after(health: HealthWatch, fault_at: float) -> float:
    """Seconds from the fault until /healthz answered 200 for good (0 if it never stopped)."""
    bad_after = [at for at, _status, _body in health.bad if at >= fault_at]
    return (max(bad_after) - fault_at) if bad_after else 0.0


# ---- the three-node cluster


@pytest.mark.cluster
def test_killing_the_leader_under_load_loses_no_acknowledged_fix_and_answers_every_request_once(
    whole_cluster: LocalCluster, fleets: list[Fleet]
):
    bootstrap = whole_cluster.bootstrap
    fleet = Fleet(bootstrap, "leader")
    fleets.append(fleet)
    health = HealthWatch(fleet.base, interval_s=0.25)
    fleet.drive(drivers=2000, riders_per_s=50, seconds=40)
    node, fix_partition, request_partition = leader_of_the_busy_partitions(bootstrap, fleet.topics)
    time.sleep(5)

    killed_at = time.time()
    whole_cluster.node(node).kill()
    wait_until(
        lambda: (
            leader_now(bootstrap, fleet.topics.drivers, fix_partition) not in (node, -1)
            and leader_now(bootstrap, fleet.topics.requests, request_partition) not in (node, -1)
        ),
        20,
        "other replicas lead the killed node's partitions",
    )
    moved_s = time.time() - killed_at
    wait_until(
        lambda: panel_shows_down(fleet.base, node), 15, f"GET /api/kafka shows node {node} down, out of every ISR"
    )
    panel_s = time.time() - killed_at
    time.sleep(max(0.0, 10 - panel_s))
    whole_cluster.start_node(node)
    restarted_at = time.time()
    wait_until(lambda: panel_shows_whole(fleet.base), 30, "GET /api/kafka shows every broker up and every ISR full")
    whole_s = time.time() - restarted_at
    outcome = fleet.finish()
    recovered = healthy_again_after(health, killed_at)
    health.stop()
    drivers = all_drivers(fleet.base)
    print(
        outcome.report(f"leader (node {node}) killed", recovered),
        f"; leadership moved in {moved_s:.1f} s, the panel showed it after {panel_s:.1f} s"
        f" and every ISR full {whole_s:.1f} s after the restart",
    )

    assert_nothing_lost(outcome, drivers=2000)
    assert_answered_exactly_once(outcome)
    assert recovered <= 15, f"/healthz was not 200 until {recovered:.1f} s after the kill: {health.bad[-3:]}"
    assert set(drivers) == {d for d, _ in outcome.fixes}, "the dashboard's snapshot holds every driver"
    assert_no_traceback(fleet.dashboard, fleet.matcher, fleet.simulator)


@pytest.mark.cluster
def test_a_rolling_restart_of_every_node_loses_nothing(whole_cluster: LocalCluster, fleets: list[Fleet]):
    bootstrap = whole_cluster.bootstrap
    fleet = Fleet(bootstrap, "rolling")
    fleets.append(fleet)
    health = HealthWatch(fleet.base, interval_s=0.25)
    fleet.drive(drivers=2000, riders_per_s=50, seconds=90)  # at most: it ends 3 s after the last restart
    time.sleep(5)
    started_at = time.time()
    restarts = []
    for node in whole_cluster.node_ids:
        began = time.monotonic()
        whole_cluster.node(node).stop()
        whole_cluster.start_node(node)
        assert wait_fully_replicated(bootstrap, 60), f"replicas back in sync after node {node} restarted"
        restarts.append(time.monotonic() - began)
    time.sleep(3)
    outcome = fleet.finish(now=True)
    recovered = healthy_again_after(health, started_at)
    health.stop()
    drivers = all_drivers(fleet.base)
    print(outcome.report("rolling restart", recovered), "; per node", [f"{s:.1f} s" for s in restarts])

    assert_nothing_lost(outcome, drivers=2000)
    assert_answered_exactly_once(outcome)
    assert set(drivers) == {d for d, _ in outcome.fixes}
    assert_no_traceback(fleet.dashboard, fleet.matcher, fleet.simulator)


@pytest.mark.cluster
def test_a_matcher_killed_while_a_broker_is_down_answers_every_request_once_after_both_come_back(
    whole_cluster: LocalCluster, fleets: list[Fleet]
):
    bootstrap = whole_cluster.bootstrap
    fleet = Fleet(bootstrap, "matcher-crash", dashboard=False)
    fleets.append(fleet)
    fleet.drive(drivers=500, riders_per_s=50, seconds=30)
    node, _fix_partition, _request_partition = leader_of_the_busy_partitions(bootstrap, fleet.topics)
    time.sleep(3)
    whole_cluster.node(node).kill()
    time.sleep(2)
    assert fleet.matcher.popen is not None
    fleet.matcher.popen.send_signal(signal.SIGKILL)
    fleet.matcher.popen.wait()
    time.sleep(5)
    whole_cluster.start_node(node)
    fleet.restart_matcher()
    outcome = fleet.finish()
    print(outcome.report(f"matcher killed while node {node} was down"))

    assert_nothing_lost(outcome, drivers=500)
    assert_answered_exactly_once(outcome)


# ---- the single node of the default demo


def test_a_single_node_stopped_for_ten_seconds_loses_nothing_and_every_process_recovers(
    private_broker: LocalBroker, fleets: list[Fleet]
):
    fleet = Fleet(private_broker.bootstrap, "bounce")
    fleets.append(fleet)
    fleet.drive(drivers=500, riders_per_s=10, seconds=35)
    time.sleep(8)
    health = HealthWatch(fleet.base, interval_s=0.25)
    stopped_at = time.time()
    private_broker.stop()
    time.sleep(10)
    private_broker.start()
    outcome = fleet.finish()
    recovered = healthy_again_after(health, stopped_at)
    health.stop()
    drivers = all_drivers(fleet.base)
    print(outcome.report("single node stopped for 10 s", recovered))

    assert_nothing_lost(outcome, drivers=500)
    assert_answered_exactly_once(outcome)
    assert set(drivers) == {d for d, _ in outcome.fixes}, "the dashboard caught up by itself"
    assert fleet.dashboard is not None and fleet.dashboard.popen.poll() is None, "the dashboard kept running"
    assert fleet.matcher.popen is not None and fleet.matcher.popen.poll() is None, "the matcher kept running"
    assert_no_traceback(fleet.dashboard, fleet.matcher, fleet.simulator)


# ---- a dashboard killed under a browser


browser = page_tests.browser
open_page = page_tests.open_page


@pytest.mark.browser
def test_a_dashboard_killed_and_started_again_has_its_fleet_back_and_the_open_page_reconnects_without_a_reload(
    kafka_bootstrap: str, fleets: list[Fleet], open_page
):
    fleet = Fleet(kafka_bootstrap, "dashboard-crash", matcher=False)
    fleets.append(fleet)
    fleet.drive(drivers=300, riders_per_s=0, seconds=60)
    wait_until(lambda: len(all_drivers(fleet.base)) == 300, 30, "the dashboard holds the fleet")
    page = open_page(fleet.base + "/")
    page.wait_drawn(300)
    page.page.evaluate("window.sameDocument = true")  # gone if the page reloads

    assert fleet.dashboard is not None and fleet.dashboard.popen is not None
    fleet.dashboard.popen.send_signal(signal.SIGKILL)
    fleet.dashboard.popen.wait()
    page.page.wait_for_function("() => document.body.dataset.connection !== 'live'", timeout=10_000)

    started = time.monotonic()
    port = int(fleet.base.rsplit(":", 1)[1])
    fleet.dashboard, _ = start_dashboard(kafka_bootstrap, fleet.topics, "fault-dashboard-crash", port, fresh_log=False)
    wait_until(lambda: len(all_drivers(fleet.base)) == 300, 10, "the restarted dashboard holds the fleet again")
    state_back_s = time.monotonic() - started
    page.page.wait_for_function("() => document.body.dataset.connection === 'live'", timeout=15_000)
    reconnected_s = time.monotonic() - started
    page.wait_drawn(300)
    print(f"dashboard killed: fleet back {state_back_s:.1f} s after the restart, page live in {reconnected_s:.1f} s")

    assert page.page.evaluate("window.sameDocument") is True, "the page reconnected without reloading"
    assert state_back_s <= 5, f"the restarted dashboard took {state_back_s:.1f} s to read its fleet back"
    assert page.errors == []
