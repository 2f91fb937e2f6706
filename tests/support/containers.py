"""The testcontainers back end: the images of docker-compose.yml, started per test session.

Only used when a Docker engine answers (none does on the project's own machines, so the local back end in
tests/services.py is what CI exercises). Kept parallel to `pipeline.stack`: same images, same settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import wait_for_logs
from testcontainers.kafka import KafkaContainer
from testcontainers.postgres import PostgresContainer

from tests.support.services import Services

PINOT_IMAGE = "apachepinot/pinot:0.11.0"


@contextmanager
def container_services() -> Iterator[Services]:
    with ExitStack() as stack:
        network = stack.enter_context(Network())
        postgres = stack.enter_context(
            PostgresContainer(
                "postgis/postgis:15-3.4", username="postgres", password="nibble", dbname="nibble"
            ).with_command("postgres -c wal_level=logical -c max_connections=200")
        )
        kafka = stack.enter_context(
            KafkaContainer("apache/kafka:4.1.1").with_kraft().with_network(network).with_network_aliases("kafka")
        )
        zookeeper = stack.enter_context(
            DockerContainer("zookeeper:3.5.8").with_network(network).with_network_aliases("zookeeper")
        )
        wait_for_logs(zookeeper, "binding to port")
        controller = stack.enter_context(
            _pinot(
                network,
                "StartController -zkAddress zookeeper:2181 -clusterName PinotCluster -controllerPort 9000",
                9000,
            )
        )
        wait_for_logs(controller, "Started Pinot \\[CONTROLLER\\]", timeout=180)
        broker = stack.enter_context(
            _pinot(
                network,
                "StartBroker -zkAddress zookeeper:2181 -clusterName PinotCluster -brokerPort 8099",
                8099,
            )
        )
        server = stack.enter_context(
            _pinot(
                network,
                "StartServer -zkAddress zookeeper:2181 "
                "-clusterName PinotCluster -serverPort 8098 "
                "-serverAdminPort 8097",
                8097,
            )
        )
        wait_for_logs(broker, "Started Pinot \\[BROKER\\]", timeout=180)
        wait_for_logs(server, "Started Pinot \\[SERVER\\]", timeout=180)
        yield Services(
            database_url=postgres.get_connection_url(driver=None),
            kafka_bootstrap=kafka.get_bootstrap_server(),
            pinot_controller_url=f"http://{controller.get_container_host_ip()}:{controller.get_exposed_port(9000)}",
            pinot_broker_url=f"http://{broker.get_container_host_ip()}:{broker.get_exposed_port(8099)}",
        )


def _pinot(network: Network, command: str, port: int) -> DockerContainer:
    return DockerContainer(PINOT_IMAGE).with_command(command).with_network(network).with_exposed_ports(port)
