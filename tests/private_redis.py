"""A Redis server of one test's own (fault tests kill, restore and wipe it), from the same
redis-server binary and settings as deploy/redis.sh, on a free loopback port."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .services import ROOT, run_deploy


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port below 45536 whose cluster bus port (+10000) is free too (Redis Cluster needs both)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 35536)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free loopback port pair")


class PrivateRedis:
    def __init__(self, directory: Path, *extra: str, probe: Callable[[int], redis.Redis] | None = None) -> None:
        """``extra``: more redis-server settings (they win over earlier ones); ``probe``: the
        client that checks it is up (for servers that refuse plain or anonymous connections)."""
        if not shutil.which("redis-server"):
            run_deploy("redis.sh", "install")
        self.directory = directory
        self.port = free_port()
        self.extra = extra
        self.probe = probe or (lambda port: redis.Redis(port=port, socket_timeout=1))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def start(self) -> PrivateRedis:
        self.data.mkdir(parents=True, exist_ok=True)
        # A copy of deploy/redis.conf: Redis rewrites its own config file (CONFIG REWRITE, which
        # Sentinel runs on a promoted replica), and the repository's copy must stay as it is.
        config = self.directory / "redis.conf"
        if not config.exists():
            shutil.copyfile(ROOT / "deploy" / "redis.conf", config)
        command = ["redis-server", str(config), "--port", str(self.port)]
        command += ["--dir", str(self.data), "--save", "", "--logfile", str(self.directory / "redis.log"), *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.probe(self.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.1)
        log = (self.directory / "redis.log").read_text()[-2000:]
        raise RuntimeError(f"private Redis on {self.port} did not start:\n{log}")

    def kill(self) -> None:
        """SIGKILL: what a crash or a lost machine does."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def snapshot(self, to: Path) -> None:
        """Copy the data files as they are now, while Redis runs (a backup, or a replica's view)."""
        shutil.copytree(self.data, to)

    def restore(self, source: Path) -> None:
        shutil.rmtree(self.data)
        shutil.copytree(source, self.data)


class PrivateSentinels:
    """Three Redis Sentinels watching one primary as service ``name`` (quorum 2, 1 s down-after)."""

    def __init__(self, directory: Path, primary: PrivateRedis, name: str = "sf") -> None:
        self.directory = directory
        self.primary = primary
        self.name = name
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + f"/{self.name}"

    def start(self) -> PrivateSentinels:
        self.directory.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            config = self.directory / f"sentinel-{port}.conf"  # Sentinel rewrites its file: one each
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\nlogfile {self.directory}/sentinel-{port}.log\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.name} 1000\n"
                f"sentinel failover-timeout {self.name} 5000\n"
            )
            self.processes.append(
                subprocess.Popen(
                    ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        return self

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels see it now (first that answers)."""
        for port in self.ports:
            try:
                address = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(self.name)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def replicas_known(self) -> int:
        try:
            return len(redis.Redis(port=self.ports[0], socket_timeout=1).sentinel_slaves(self.name))
        except redis.RedisError:
            return 0

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
