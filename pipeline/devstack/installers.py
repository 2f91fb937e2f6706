"""What the local stack installs or finds before a service can start: Debian packages, each Java runtime's jars
from Maven Central (stack/maven/*/pom.xml, jars in ~/.m2, so a second `up` downloads nothing), the project's
Pinot decoder jar, the schema registry's unpacked archive, and a Java new enough for the registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from pipeline.devstack import processes
from pipeline.devstack.processes import StackError
from pipeline.devstack.superset import REDIS_SERVER
from pipeline.resources import PINOT, STACK_RECIPES

Report = Callable[[str], None]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
JAVA = str(JAVA_HOME / "bin" / "java")
DEBIAN_PACKAGES = {
    # package: a file it installs, to tell whether it is there
    "postgresql-15": PG_BIN / "postgres",
    "postgresql-15-postgis-3": Path("/usr/share/postgresql/15/extension/postgis.control"),
    "postgresql-15-partman": Path("/usr/share/postgresql/15/extension/pg_partman.control"),
    "openjdk-17-jre-headless": JAVA_HOME / "bin" / "java",
    "openjdk-17-jdk-headless": JAVA_HOME / "bin" / "javac",  # builds the Pinot decoder
    "maven": Path("/usr/bin/mvn"),
    "redis-server": Path(REDIS_SERVER),
}


def ensure_debian_packages(report: Report) -> None:
    missing = [package for package, marker in DEBIAN_PACKAGES.items() if not marker.exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages; run: sudo apt-get install -y {' '.join(missing)}")
    report(f"installing Debian packages: {' '.join(missing)}")
    processes.run(["apt-get", "update", "-q"], "apt-get update")
    processes.run(
        ["apt-get", "install", "-y", "-q", *missing],
        "apt-get install",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


class Classpaths:
    """Each runtime's jars (stack/maven/<runtime>/pom.xml) resolved from Maven Central once; later calls read
    the classpath cached under the state dir."""

    def __init__(self, state: Path, report: Report) -> None:
        self.state = state
        self.report = report
        self._resolved: dict[str, str] = {}

    def of(self, runtime: str) -> str:
        if runtime in self._resolved:
            return self._resolved[runtime]
        pom = STACK_RECIPES / "maven" / runtime / "pom.xml"
        cached = self.state / f"{runtime}.classpath"
        if cached.exists() and cached.stat().st_mtime >= pom.stat().st_mtime:
            classpath = cached.read_text().strip()
            if all(Path(jar).exists() for jar in classpath.split(":")):
                self._resolved[runtime] = classpath
                return classpath
        self.report(f"{runtime}: resolving jars from Maven Central (first run downloads them into ~/.m2)")
        command = ["mvn", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={cached}"]
        output: list[str] = []
        downloaded = 0
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as maven:
            assert maven.stdout is not None
            for line in maven.stdout:
                output.append(line)
                if line.startswith("Downloaded from") and ".jar " in line:
                    downloaded += 1
                    if downloaded % 25 == 0:
                        self.report(f"{runtime}: {downloaded} jars downloaded so far")
        if maven.returncode != 0:
            raise StackError(f"{runtime}: Maven could not resolve {pom}:\n{''.join(output[-40:])}")
        self._resolved[runtime] = cached.read_text().strip()
        return self._resolved[runtime]


def pinot_decoder(state: Path, report: Report) -> Path:
    """The project's decoder jar (pinot/decoder), built by Maven under the state dir when its sources are newer
    than the jar."""
    project = PINOT / "decoder"
    out = state / "pinot-decoder"
    jar = out / "nibble-pinot-decoder.jar"
    sources = [project / "pom.xml", *(project / "src").rglob("*.java")]
    if jar.exists() and jar.stat().st_mtime >= max(source.stat().st_mtime for source in sources):
        return jar
    report("pinot-server: building the wire-format decoder (pinot/decoder)")
    command = ["mvn", "-B", "-q", "-f", str(project / "pom.xml"), "package", f"-Dout={out}"]
    processes.run(command, "pinot decoder: mvn package", env={**os.environ, "JAVA_HOME": str(JAVA_HOME)})
    return jar


def unpacked(archive: Path, root: Path, report: Report) -> Path:
    """The schema registry's tar.gz untarred once under `root`: the application's folder."""
    app = root / archive.name.removesuffix(".tar.gz")
    if not (app / "quarkus-run.jar").exists():
        report(f"schema-registry: unpacking {archive.name}")
        unpacking = root / "unpacking"
        shutil.rmtree(unpacking, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(unpacking, filter="data")
        unpacking.rename(app)  # whole or not at all: a crash mid-untar leaves only `unpacking`
    return app


def newest_java(minimum: int, service: str) -> str:
    """The java binary of the newest JDK/JRE found (JAVA_HOME, /usr/lib/jvm/*, PATH), if it is at least
    `minimum`; the stack's own Java 17 stays the one Kafka and Pinot run on."""
    homes = [os.environ["JAVA_HOME"]] if os.environ.get("JAVA_HOME") else []
    candidates = [Path(home) / "bin" / "java" for home in homes] + sorted(Path("/usr/lib/jvm").glob("*/bin/java"))
    on_path = shutil.which("java")
    candidates += [Path(on_path)] if on_path else []
    found: dict[Path, int] = {}
    for java in candidates:
        if java.exists() and java.resolve() not in found:
            found[java.resolve()] = _java_major(java)
    best = max(found, key=found.__getitem__, default=None)
    if best is None or found[best] < minimum:
        seen = ", ".join(f"{java} ({major})" for java, major in found.items()) or "none"
        raise StackError(
            f"{service}: needs Java {minimum} or newer, found {seen} in JAVA_HOME, /usr/lib/jvm and PATH; "
            f"install one (e.g. Temurin {minimum}+ under /usr/lib/jvm) or point JAVA_HOME at it"
        )
    return str(best)


def _java_major(java: Path) -> int:
    """The feature version `java -version` reports ('1.8.0' -> 8, '25.0.3' -> 25); 0 if it does not run."""
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(?:1\.)?(\d+)', result.stderr)
    return int(match.group(1)) if match else 0
