"""`nibble relay` as the operator runs it: a separate process, stopped by signals. The one way tests and
benchmarks start a relay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

from connectors.registry import Registry
from pipeline.config import load_settings
from pipeline.contract.codec import Codec
from pipeline.contract.subjects import apply_subjects, subject_name
from tests.support.services import Services


def register_subjects(prefix: str) -> None:
    """The prefix's topics' subjects in the schema registry, as `nibble schemas apply` registers them: the
    relay frames every message with its version's registry id."""
    apply_subjects(Registry(load_settings().endpoints.schema_registry_url), Codec(prefix))


def delete_subjects(prefix: str) -> None:
    if prefix:  # never the stack's own subjects
        registry = Registry(load_settings().endpoints.schema_registry_url)
        for topic in Codec(prefix).topics:
            registry.delete_subject(subject_name(topic))


class RelayProcess:
    """A relay on database `db` as the least-privileged `nibble_relay` role; `settings` are extra NIBBLE_*
    variables by lower-case name (e.g. relay_batch_size="500"). One plain relay process unless `processes`
    asks for a supervisor of several."""

    def __init__(self, services: Services, db: str, prefix: str = "", processes: int = 1, **settings: str) -> None:
        register_subjects(prefix)
        env = {
            **os.environ,
            **services.environ(),
            "NIBBLE_DATABASE_URL": services.relay_url_for(db.rsplit("/", 1)[1]),
            "NIBBLE_TOPIC_PREFIX": prefix,
            "NIBBLE_RELAY_METRICS_PORT": "0",
            **{f"NIBBLE_{name.upper()}": value for name, value in settings.items()},
        }
        # A file, not a pipe: a relay logging a lot (e.g. librdkafka while Kafka is away) must never block.
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the process)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "relay", "--processes", str(processes)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            text=True,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no chance to finish the batch in flight."""
        self.process.kill()
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: frozen where it is (a batch possibly in flight), to look at the outbox and Kafka as they are."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def logs(self) -> list[dict]:
        self.stderr.seek(0)
        return [json.loads(line) for line in self.stderr.read().splitlines() if line.startswith("{")]
