"""Settings of the local broker, read from environment variables."""

from pathlib import Path

from fleet.settings import Setting

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / ".work"

BROKER_PORT = Setting("BROKER_PORT", 9092, "Port of the local broker's PLAINTEXT listener (127.0.0.1).", int)
BROKER_CONTROLLER_PORT = Setting(
    "BROKER_CONTROLLER_PORT", 9093, "Port of the local broker's KRaft CONTROLLER listener.", int
)
BROKER_NODE_DIR = Setting(
    "BROKER_NODE_DIR", WORK_DIR / "node", "Where the local broker keeps its config, data and logs.", Path
)
BROKER_HEAP = Setting("BROKER_HEAP", "512m", "Java heap of the local broker (-Xmx).")
JAVA_HOME = Setting("JAVA_HOME", None, "The Java 17+ that runs the local broker (default: `java` on PATH).", Path)
KAFKA_HOME = Setting(
    "KAFKA_HOME", None, "An existing Kafka install whose libs/ the local broker uses instead of Maven's jars.", Path
)
