"""THE COMPARISON, NOT THE PRODUCT: the dashboard most Kafka + Flask-SocketIO tutorials build.

``bench/pipeline.py`` runs it beside ``python -m dashboard`` to measure how much the product's design
buys: a Flask-SocketIO app on eventlet whose background task iterates a kafka-python consumer and
``socketio.emit``s one JSON event per Kafka message to every connected browser. Nothing in the
product imports it.

What is kept from the tutorials: a consumer group with auto-commit, ``json.loads`` of each value,
one broadcast ``emit`` per message, ``cors_allowed_origins="*"``. What is added so it can be
measured fairly: ``socketio.sleep(0)`` after each emit (without it the writers of the clients do not
run while messages keep coming, which only makes it worse), ``auto_offset_reset="latest"`` (the
product also starts at the live end in these runs), and two counters on ``/healthz`` for the
benchmark (consumed and emitted messages; 200 once the consumer has its partitions).

    .venv/bin/python -m bench.tutorial_dashboard --port 5001 --topic driver-location
"""

import eventlet

eventlet.monkey_patch()  # first, as the tutorials say: kafka-python must get the green socket module

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

from flask import Flask, jsonify  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from fleet.settings import DRIVER_TOPIC, KAFKA_BOOTSTRAP_SERVERS  # noqa: E402

EVENT = "location_update"

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", cors_allowed_origins="*")
counts = {"consumed": 0, "emitted": 0, "assigned": False}


def consume(bootstrap: str, topic: str) -> None:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=f"tutorial-dashboard-{os.getpid()}",
        auto_offset_reset="latest",
        enable_auto_commit=True,
    )
    consumer.poll(timeout_ms=0)  # join the group now, so /healthz can say when the partitions are ours
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    counts["assigned"] = True
    for message in consumer:
        location = json.loads(message.value.decode("utf-8"))
        counts["consumed"] += 1
        socketio.emit(EVENT, location)
        counts["emitted"] += 1
        socketio.sleep(0)


@app.route("/healthz")
def healthz():
    return jsonify(counts), 200 if counts["assigned"] else 503


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tutorial_dashboard",
        description="The tutorial way (the benchmark's comparison): one Socket.IO event per Kafka message.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--topic", default=DRIVER_TOPIC.read())
    parser.add_argument("--bootstrap-servers", default=KAFKA_BOOTSTRAP_SERVERS.read())
    return parser


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    socketio.start_background_task(consume, args.bootstrap_servers, args.topic)
    socketio.run(app, host="127.0.0.1", port=args.port, log_output=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
