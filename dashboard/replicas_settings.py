"""Settings of `python -m dashboard.replicas`: several dashboards behind nginx, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.settings import DashboardSettings
from fleet.settings import LOG_LEVEL, Setting, Settings, port_number, positive_int, setting_field


def replica_count(raw: str) -> int:
    value = positive_int(raw)
    if value > 64:  # each one holds the whole fleet: more than a machine's cores is only memory spent
        raise ValueError(f"{value} dashboards is more than 64")
    return value


DASHBOARDS = Setting("REPLICAS_COUNT", 2, "Dashboard processes behind nginx (1-64).", replica_count)
HOST = Setting(
    "REPLICAS_HOST",
    "127.0.0.1",
    "Address nginx listens on (0.0.0.0: every interface); the dashboards stay on loopback.",
)
PORT = Setting("REPLICAS_PORT", 8080, "Port nginx listens on: the map's address.", port_number)
FIRST_DASHBOARD_PORT = Setting(
    "REPLICAS_FIRST_DASHBOARD_PORT",
    5001,
    "Port of the first dashboard; the others take the next ones (127.0.0.1 only).",
    port_number,
)
NGINX = Setting("REPLICAS_NGINX", "/usr/sbin/nginx", "The nginx binary (Debian's package `nginx`).")
WORK_DIR = Setting(
    "REPLICAS_WORK_DIR",
    "",
    "Folder for nginx's generated config, pid, access log and temp files (unset: a temporary one, removed at exit).",
)


@dataclass(frozen=True)
class ReplicasSettings(Settings):
    """Everything `python -m dashboard.replicas` is configured with; each dashboard reads its own settings
    (DASHBOARD_*, KAFKA_BOOTSTRAP_SERVERS, DRIVER_TOPIC...) from the environment it inherits."""

    dashboards: int = setting_field(DASHBOARDS, "--replicas", "N")
    host: str = setting_field(HOST, "--host", "ADDRESS")
    port: int = setting_field(PORT, "--port", "PORT")
    first_dashboard_port: int = setting_field(FIRST_DASHBOARD_PORT, "--first-dashboard-port", "PORT")
    nginx: str = setting_field(NGINX, "--nginx", "PATH")
    work_dir: str = setting_field(WORK_DIR, "--work-dir", "DIR")
    log_level: str = setting_field(LOG_LEVEL, "--log-level", "LEVEL")

    @property
    def dashboard_ports(self) -> list[int]:
        return list(range(self.first_dashboard_port, self.first_dashboard_port + self.dashboards))

    @property
    def url(self) -> str:
        """Where a browser on this machine opens the map: nginx's address, written as a dashboard's would be."""
        return DashboardSettings(host=self.host, port=self.port).url
