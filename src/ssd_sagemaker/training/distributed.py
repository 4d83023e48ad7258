"""Several hosts on MXNet's parameter server, started the way SageMaker's MXNet toolkit does
(its `tools/launch.py` is broken on Python ≥ 3.9): `hosts[0]` runs the scheduler, every host
runs one server process, and the training process itself is the worker. The `DMLC_*`
variables tell each role where the scheduler is and how many of each role to expect."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd_sagemaker.environment import ResourceConfig, TrainingSettings
from ssd_sagemaker.errors import AlgorithmError, ClientError, end_job_at_once
from ssd_sagemaker.training.coordination import Coordinator, Peer
from ssd_sagemaker.variables import SSD_HOST_RESOLVE_TIMEOUT

LOG = logging.getLogger(__name__)


def choose_kv_store(resources: ResourceConfig, requested: str | None, devices: int) -> str | None:
    """The kvstore type: `dist_*` across hosts (dist_sync when none is given), the device
    kvstore for several devices on one host, none for one device."""
    if len(resources.hosts) == 1:
        if requested:
            LOG.info("kv_store=%s is ignored on a single host", requested)
        return "device" if devices > 1 else None
    if not requested:
        LOG.info("%d hosts and no kv_store: using dist_sync", len(resources.hosts))
        return "dist_sync"
    return requested


def resolve_addresses(hosts: tuple[str, ...], timeout: float,
                      resolve: Callable[[str], str] = socket.gethostbyname,
                      sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """Each host's IPv4 address, retrying for `timeout` seconds while names are not yet
    resolvable (hosts start at different times); a ClientError names the unresolvable hosts
    after the deadline."""
    deadline = time.monotonic() + timeout
    addresses: dict[str, str] = {}
    while True:
        for host in hosts:
            if host in addresses:
                continue
            try:
                addresses[host] = resolve(host)
            except OSError:
                pass
        missing = [host for host in hosts if host not in addresses]
        if not missing:
            return addresses
        if time.monotonic() >= deadline:
            raise ClientError(
                f"Cannot resolve the address of host(s) {', '.join(missing)} after "
                f"{timeout:.0f} s; check the cluster's DNS / hosts file (or raise "
                f"{SSD_HOST_RESOLVE_TIMEOUT})."
            )
        LOG.info("waiting for host name(s) %s to resolve", ", ".join(missing))
        sleep(2.0)


SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def interface_address(name: str) -> str | None:
    """The IPv4 address of this host's network interface `name`; None when it has none (or
    there is no such interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def check_interface(name: str,
                    address_of: Callable[[str], str | None] = interface_address) -> None:
    """ps-lite aborts (no failure file) when `DMLC_INTERFACE` names an interface without an
    IPv4 address: refuse such a resource config here, naming the interfaces there are."""
    if address_of(name) is None:
        present = ", ".join(interface for _, interface in socket.if_nameindex())
        raise ClientError(
            f"resourceconfig.json names network_interface_name={name!r}, which has no IPv4 "
            f"address on this host (its interfaces: {present}); the parameter server listens "
            f"only on that interface: name the interface of the cluster's network.")


@dataclass(frozen=True)
class Cluster:
    """The hosts of a multi-host job and where its scheduler listens."""

    resources: ResourceConfig
    addresses: Mapping[str, str]
    scheduler_port: int
    kv_store: str

    @property
    def scheduler_address(self) -> str:
        return self.addresses[self.resources.hosts[0]]

    def role_environment(self, role: str) -> dict[str, str]:
        """The `DMLC_*` variables of one role on this host. The parameter server has no
        authentication and unpickles what it is sent, so each node listens on one address:
        the cluster interface's (ps-lite's van reads `DMLC_INTERFACE` only when
        `DMLC_NODE_HOST` is unset, and binds that interface's IPv4 address), else this
        host's resolved address. The scheduler listens on `DMLC_PS_ROOT_URI`."""
        environment = {
            "DMLC_ROLE": role,
            "DMLC_PS_ROOT_URI": self.scheduler_address,
            "DMLC_PS_ROOT_PORT": str(self.scheduler_port),
            "DMLC_NUM_SERVER": str(len(self.resources.hosts)),
            "DMLC_NUM_WORKER": str(len(self.resources.hosts)),
        }
        if self.resources.network_interface_name:
            environment["DMLC_INTERFACE"] = self.resources.network_interface_name
        else:
            environment["DMLC_NODE_HOST"] = self.addresses[self.resources.current_host]
        return environment


def make_cluster(resources: ResourceConfig, kv_store: str, settings: TrainingSettings) -> Cluster:
    if resources.network_interface_name:
        check_interface(resources.network_interface_name)
    return Cluster(resources, resolve_addresses(resources.hosts, settings.resolve_timeout),
                   settings.scheduler_port, kv_store)


class ParameterServerRoles:
    """The scheduler (on `hosts[0]`) and server processes of this host: started before the
    worker creates its kvstore, ended when training ends or fails (no orphans)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.processes: list[subprocess.Popen] = []

    def _start(self, role: str) -> None:
        environ = dict(os.environ, **self.cluster.role_environment(role))
        # Importing mxnet with DMLC_ROLE=scheduler/server runs that role until the job ends.
        process = subprocess.Popen([sys.executable, "-c", "import mxnet"], env=environ,
                                   start_new_session=True)
        LOG.info("started the %s (pid %d) for %s", role, process.pid,
                 self.cluster.resources.current_host)
        self.processes.append(process)

    def start(self) -> ParameterServerRoles:
        if self.cluster.resources.is_master:
            self._start("scheduler")
        self._start("server")
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Wait `grace` seconds for the roles to end by themselves, then terminate, then kill."""
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def initialise_kvstore(trainer: Any) -> None:
    """Give every worker rank 0's weights before any gradient is pushed: call it after the
    network is built and resumed, before the first batch, on every worker (a `gluon.Trainer`
    on a `dist_*` kvstore).

    MXNet's own `init` is safe: rank 0's push is acknowledged by the servers before a worker
    barrier (`InitImpl` in kvstore_dist.h), so no worker pushes before the servers hold a key.
    The pull of the weights is asynchronous, though, and with `update_on_kvstore=False` each
    merge replaces a key's value on the servers with the summed gradient (`ApplyUpdates` in
    kvstore_dist_server.h): a pull served after the first merge returns that sum as the
    weight. Left to the first `step()`, the pulls are in flight beside that step's backward
    pass and gradient pushes; the one-step test, which did that, once ended with a zero-
    initialised bias at ~-199x the single-process update (weight = G - 0.005 G at lr 0.01 over
    2 workers): that signature. Here the pulls complete (`waitall`) and a kvstore barrier
    holds every worker until all have them, before any gradient exists. (MXNet 1.x has no
    public call for this.)"""
    import mxnet as mx

    mx.nd.waitall()
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    mx.nd.waitall()
    if trainer._kvstore is not None and "dist" in trainer._kvstore.type:
        trainer._kvstore._barrier()


def become_worker(cluster: Cluster) -> None:
    """Make this process the worker: ps-lite reads the `DMLC_*` variables when the kvstore is
    created, so they must be in this process's environment."""
    os.environ.update(cluster.role_environment("worker"))


class DistributedJob:
    """This host's part of a multi-host job, as a context manager around training: starts the
    parameter-server roles and the control channel, makes this process the worker, shares the
    master's decisions, and on any host's failure ends the job everywhere with a failure file."""

    FINISH_TIMEOUT = 120.0

    def __init__(self, cluster: Cluster, output_dir: Path, join_timeout: float):
        self.cluster = cluster
        self._output_dir = output_dir
        self._join_timeout = join_timeout
        self._roles = ParameterServerRoles(cluster)
        self._coordinator: Coordinator | None = None
        self._peer: Peer | None = None

    def __enter__(self) -> DistributedJob:
        control_port = self.cluster.scheduler_port + 1
        hosts, current_host = self.cluster.resources.hosts, self.cluster.resources.current_host
        if self.cluster.resources.is_master:
            self._coordinator = Coordinator(self.cluster.scheduler_address, control_port,
                                            len(hosts))
        self._roles.start()
        try:
            self._peer = Peer(current_host, self.cluster.scheduler_address,
                              control_port, self._join_timeout, self._abort,
                              coordinator_host=hosts[0])
            # The kvstore waits for every node without a deadline: wait here, with one.
            self._peer.wait_for("all_joined", timeout=self._join_timeout)
        except (ConnectionError, TimeoutError):
            self._roles.stop(grace=0.0)
            if self._coordinator is not None:
                self._coordinator.close()
            raise ClientError(
                f"Not every host of {', '.join(hosts)} joined the training job "
                f"within {self._join_timeout:.0f} s (the job coordinator is on "
                f"{hosts[0]} at {self.cluster.scheduler_address}:{control_port}); "
                f"a host may have failed before training: see its log and failure reason."
            ) from None
        become_worker(self.cluster)
        LOG.info("host %s (%d of %d) is a %s worker; scheduler at %s:%d",
                 current_host, hosts.index(current_host) + 1,
                 len(hosts), self.cluster.kv_store, self.cluster.scheduler_address,
                 self.cluster.scheduler_port)
        return self

    def agree(self, key: str, local_value):
        """The master's value of `key` on every host (the master's own value is shared)."""
        assert self._peer is not None
        if self.cluster.resources.is_master:
            return self._peer.share(key, local_value)
        return self._peer.wait_for(key)

    def __exit__(self, exc_type, exc, traceback) -> None:
        assert self._peer is not None
        if exc is not None:
            self._fail(exc)
        self._peer.report_done()
        if self._coordinator is not None:
            if not self._coordinator.wait_until_all_finished(self.FINISH_TIMEOUT):
                LOG.warning("not every host reported the end of training within %.0f s",
                            self.FINISH_TIMEOUT)
        self._roles.stop()
        self._peer.close()
        if self._coordinator is not None:
            self._coordinator.close()

    def _fail(self, exc: BaseException) -> None:
        """This worker failed (or was stopped): tell the others, write the failure file (none
        for a stop) and leave at once — the kvstore's exit barrier would wait forever for the
        workers that are now stopping."""
        assert self._peer is not None
        self._peer.report_failure(f"{type(exc).__name__}: {exc}")
        end_job_at_once(exc, self._output_dir, functools.partial(self._roles.stop, grace=0.0))

    def _abort(self, host: str, reason: str) -> None:
        """Another host failed: this worker may be blocked inside a kvstore call, so write the
        failure file, end the roles and leave the process at once."""
        error = AlgorithmError(f"Training failed on host {host}: {reason}. This host "
                               f"({self.cluster.resources.current_host}) stopped with it.")
        end_job_at_once(error, self._output_dir, functools.partial(self._roles.stop, grace=0.0),
                        exit_code=1)


@contextlib.contextmanager
def distributed_job(kv_store: str | None, resources: ResourceConfig, settings: TrainingSettings,
                    output_dir: Path) -> Iterator[DistributedJob | None]:
    """Around training: this host's part of a multi-host job for a `dist_*` kvstore, None (one
    host, nothing to coordinate) for any other."""
    if kv_store is None or not kv_store.startswith("dist"):
        yield None
        return
    with DistributedJob(make_cluster(resources, kv_store, settings), output_dir,
                        settings.join_timeout) as job:
        yield job


def release_kvstore(net: Any) -> None:
    """Let the distributed kvstore be freed now (after `del` of the trainer): its destructor is
    ps-lite's finalisation barrier, which ends every worker, server and the scheduler
    together. Parameters keep a reference to their Trainer, which holds the kvstore."""
    for param in net.collect_params().values():
        param._set_trainer(None)  # MXNet 1.x has no public way to detach a Trainer
