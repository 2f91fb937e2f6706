"""The configuration each service of the local stack reads, rendered from the settings and the templates in
stack/. Pure: the files are written by whoever starts the service (services.py, postgres_cluster.py)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import StackSettings
from pipeline.resources import STACK_RECIPES


def properties(config: dict[str, object]) -> str:
    """A Java properties file, one `key=value` a line."""
    return "".join(f"{key}={value}\n" for key, value in config.items())


def postgres_conf(s: StackSettings, root: Path) -> str:
    """What the stack adds to initdb's postgresql.conf: stack/postgres/postgresql.conf, the port, and the socket
    directory under the stack's own folder."""
    settings = (STACK_RECIPES / "postgres" / "postgresql.conf").read_text()
    return settings + f"port = {s.postgres_port}\nunix_socket_directories = '{root}'\n"


def kafka_properties(s: StackSettings, data: Path) -> str:
    """Kafka's server.properties (KRaft, combined mode) from stack/kafka/server.properties."""
    template = (STACK_RECIPES / "kafka" / "server.properties").read_text()
    return template.format(port=s.kafka_port, controller_port=s.kafka_controller_port, data_dir=data)


def registry_properties(s: StackSettings, root: Path) -> dict[str, object]:
    """Apicurio's system properties: loopback listeners, schemas in a file-backed H2 database under `root`."""
    return {
        "quarkus.http.host": "127.0.0.1",
        "quarkus.http.port": s.schema_registry_port,
        "quarkus.management.host": "127.0.0.1",
        "quarkus.management.port": s.schema_registry_management_port,
        # H2 writes a commit to the file only after WRITE_DELAY (500 ms by default): a registry killed within
        # it would forget schemas (and hand their ids out again). 0: each commit reaches the file at once.
        "apicurio.datasource.url": f"jdbc:h2:file:{root / 'data' / 'registry'};WRITE_DELAY=0",
    }


def pinot_config(name: str, s: StackSettings, root: Path, replicas: int = 1) -> dict[str, object]:
    """The properties of one Pinot role (or of Pinot's ZooKeeper), for tables of `replicas` copies. Files,
    because only they reach the settings that bind each listener to 127.0.0.1 (the command-line flags of Pinot's
    Start* commands produce the legacy port keys, which bind every interface; docs/security.md)."""
    zk = f"127.0.0.1:{s.zookeeper_port}"
    cluster = {"pinot.zk.server": zk, "pinot.cluster.name": "PinotCluster"}
    if name == "zookeeper":
        return {
            "dataDir": root / "zookeeper",
            "clientPort": s.zookeeper_port,
            "clientPortAddress": "127.0.0.1",
            "tickTime": 2000,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "srvr,ruok",
        }
    if name == "pinot-controller":
        return {
            "controller.zk.str": zk,
            "controller.helix.cluster.name": "PinotCluster",
            "controller.host": "127.0.0.1",
            "controller.access.protocols": "http",
            "controller.access.protocols.http.host": "127.0.0.1",
            "controller.access.protocols.http.port": s.pinot_controller_port,
            "controller.vip.host": "127.0.0.1",
            "controller.vip.port": s.pinot_controller_port,
            "controller.data.dir": root / "controller",
            # Runs the minion's task on each table's own cron schedule (NIBBLE_PINOT_MINION_SCHEDULE, applied
            # with the table); the retention manager drops realtime segments older than the window hourly.
            "controller.task.scheduler.enabled": "true",
            "controller.retention.frequencyPeriod": "1h",
        }
    if name == "pinot-broker":
        return {
            **cluster,
            "pinot.broker.hostname": "127.0.0.1",
            "pinot.broker.client.access.protocols": "http",
            "pinot.broker.client.access.protocols.http.host": "127.0.0.1",
            "pinot.broker.client.access.protocols.http.port": s.pinot_broker_port,
            # A server the broker cannot reach is left out of routing at once (its replica answers instead),
            # and tried again after 1, 1.5, 2.25, ... s; without it, until ZooKeeper ends the dead server's
            # session (docs/operations.md).
            "pinot.broker.failure.detector.type": "CONNECTION",
            "pinot.broker.failure.detector.retry.initial.delay.ms": 1000,
            "pinot.broker.failure.detector.retry.delay.factor": 1.5,
        }
    if name == "pinot-minion":
        return {
            **cluster,
            "pinot.minion.host": "127.0.0.1",
            # Pinot 0.11 binds this port on every interface whatever the settings (docs/security.md).
            "pinot.minion.port": s.pinot_minion_port,
            "dataDir": root / "minion" / "data",  # emptied at each start: a task's scratch files
        }
    # The second server of the high-availability profile: ports and data of its own.
    second = name == "pinot-server-2"
    directory = root / ("server-2" if second else "server")
    server = {
        **cluster,
        "pinot.server.netty.host": "127.0.0.1",
        # Pinot 0.11 binds the query port on every interface whatever the settings (docs/security.md).
        "pinot.server.netty.port": s.pinot_server_2_port if second else s.pinot_server_port,
        "pinot.server.adminapi.access.protocols": "http",
        "pinot.server.adminapi.access.protocols.http.host": "127.0.0.1",
        "pinot.server.adminapi.access.protocols.http.port": s.pinot_server_2_admin_port
        if second
        else s.pinot_server_admin_port,
        "pinot.server.grpc.enable": "false",  # streaming queries are unused, and gRPC cannot bind loopback
        "pinot.server.instance.dataDir": directory / "data",
        "pinot.server.instance.segmentTarDir": directory / "segments",
        "pinot.server.startup.serviceStatusCheckIntervalMs": 1000,  # healthy within a second, not ten
    }
    if replicas > 1:
        # A starting replica joins the broker's routing only once its consuming segments have reached the
        # stream's newest offsets, while its peer answers: it does not answer behind it. At most 45 s: 0.11
        # reads those offsets once per segment, and a read that times out (seen under load) leaves the check
        # waiting for the limit. Not for one server, which would only stay without any answer for longer.
        server["pinot.server.starter.enableRealtimeOffsetBasedConsumptionStatusChecker"] = "true"
        server["pinot.server.starter.realtimeConsumptionCatchupWaitMs"] = 45_000
    return server
