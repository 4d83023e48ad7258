"""Two hosts on this machine, each with its own /opt/ml tree and resourceconfig.json, training
as one parameter-server job with real scheduler, server and worker processes.

Hosts are network namespaces when this machine allows it (`ip netns`, a veth pair, each host
its own address and /etc/netns/<name>/hosts), otherwise processes on loopback, each in a mount
namespace whose /etc/hosts names both hosts: either way names resolve as on SageMaker, through
the resolver, with no test-only hook in the product."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cli_runner import cli_env, write_demo_job
from ssd_sagemaker.serving.loopback import free_port
from ssd_sagemaker.training.precision import cpu_has_bfloat16

pytestmark = pytest.mark.slow

HOSTS = ("algo-1", "algo-2")
BASE = {"num_classes": "3", "num_training_samples": "8", "epochs": "1", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300"}


def _host_tree(base, host, interface, **hyperparameters):
    """The host's /opt/ml tree; `interface`: its network's (the parameter server binds it)."""
    write_demo_job(base, dict(BASE, **hyperparameters), 8, 2)
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": list(HOSTS), "network_interface_name": interface}))


def _start_hosts(tmp_path, network, **hyperparameters):
    port = free_port()
    processes = {}
    for host in HOSTS:
        base = tmp_path / host
        _host_tree(base, host, network.interface(host), **hyperparameters)
        env = cli_env(base, SSD_SCHEDULER_PORT=str(port), SSD_HOST_RESOLVE_TIMEOUT="60")
        processes[host] = subprocess.Popen(
            network.command(host, [sys.executable, "-m", "ssd_sagemaker", "train"]), env=env,
            stdout=open(base / "train.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
    return processes


def _wait(processes, timeout=600):
    deadline = time.time() + timeout
    codes = {}
    try:
        for host, process in processes.items():
            codes[host] = process.wait(timeout=max(1, deadline - time.time()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 9)
    return codes


def _log(tmp_path, host):
    return (tmp_path / host / "train.log").read_text()


class Loopback:
    """Both hosts on 127.0.0.1, each process tree in its own mount namespace with an /etc/hosts
    naming both hosts (`unshare -m`, root): the resolver finds them as it would on SageMaker."""

    name = "loopback"

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="ssd-hosts-")
        self.hosts_file = Path(self._folder.name) / "hosts"
        self.hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"127.0.0.1 {host}\n" for host in HOSTS))
        probe = subprocess.run(self.command(HOSTS[0], [sys.executable, "-c", (
            "import socket, sys; sys.exit(socket.gethostbyname(sys.argv[1]) != '127.0.0.1')"),
            HOSTS[1]]), capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            self.close()
            raise OSError(f"unshare -m with a private /etc/hosts failed: {probe.stderr.strip()}")

    def interface(self, host):
        return "lo"

    def command(self, host, argv):
        return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
                str(self.hosts_file), *argv]

    def close(self):
        self._folder.cleanup()


class Namespaces:
    """Each host in its own network namespace, joined by a veth pair, with its own address and
    its own /etc/netns/<name>/hosts naming both hosts (as SageMaker's DNS would)."""

    name = "network namespaces"

    def __init__(self):
        tag = f"ssd{os.getpid() % 100000}"
        self.namespaces = {host: f"{tag}-{i}" for i, host in enumerate(HOSTS, 1)}
        self.addresses = {host: f"10.213.{os.getpid() % 200 + 20}.{i}"
                          for i, host in enumerate(HOSTS, 1)}
        links = {host: f"{tag}v{i}" for i, host in enumerate(HOSTS, 1)}
        self.links = links
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{address} {host}\n" for host, address in self.addresses.items())
        try:
            first, second = HOSTS
            self._run("ip", "link", "add", links[first], "type", "veth", "peer", "name",
                      links[second])
            for host, namespace in self.namespaces.items():
                self._run("ip", "netns", "add", namespace)
                self._run("ip", "link", "set", links[host], "netns", namespace)
                self._run("ip", "-n", namespace, "addr", "add", f"{self.addresses[host]}/24",
                          "dev", links[host])
                self._run("ip", "-n", namespace, "link", "set", links[host], "up")
                self._run("ip", "-n", namespace, "link", "set", "lo", "up")
                folder = Path("/etc/netns") / namespace
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "hosts").write_text(hosts_file)
        except Exception:
            self.close()
            raise

    @staticmethod
    def _run(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def interface(self, host):
        return self.links[host]

    def command(self, host, argv):
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def close(self):
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
            folder = Path("/etc/netns") / namespace
            if folder.exists():
                (folder / "hosts").unlink(missing_ok=True)
                folder.rmdir()


@pytest.fixture(scope="module")
def network():
    """Network namespaces where this machine allows them (root, iproute2), else loopback in
    mount namespaces (root, util-linux); neither: these tests cannot run here."""
    try:
        hosts = Namespaces()
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"network namespaces unavailable ({error}); hosts share loopback")
        try:
            hosts = Loopback()
        except (OSError, subprocess.SubprocessError) as second:
            pytest.skip(f"no way to give the hosts their names here: {error}; {second}")
    yield hosts
    hosts.close()


def _processes_of(tmp_path):
    """Processes (any role) still running with this test's trees in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if str(tmp_path).encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _wait_no_processes(tmp_path, timeout=30):
    deadline = time.time() + timeout
    while _processes_of(tmp_path) and time.time() < deadline:
        time.sleep(0.5)
    return _processes_of(tmp_path)


def test_dist_sync_two_hosts_one_artifact(tmp_path, network):
    processes = _start_hosts(tmp_path, network, kv_store="dist_sync")
    codes = _wait(processes)
    assert codes == {"algo-1": 0, "algo-2": 0}, _log(tmp_path, "algo-1") + _log(tmp_path, "algo-2")
    first, second = tmp_path / "algo-1", tmp_path / "algo-2"
    assert (first / "model/model_algo_1-0000.params").is_file()
    assert not (second / "model").exists() or not any((second / "model").iterdir())
    assert (first / "output/success").exists() and (second / "output/success").exists()
    assert (first / "output/data/metrics.jsonl").exists()
    assert not (second / "output/data").exists()
    log_one, log_two = _log(tmp_path, "algo-1"), _log(tmp_path, "algo-2")
    assert "is a dist_sync worker" in log_one and "is a dist_sync worker" in log_two
    assert "validation mAP" in log_one and "validation mAP" not in log_two
    # each host found the other by name, at its address (loopback: its /etc/hosts says 127.0.0.1)
    scheduler = network.addresses["algo-1"] if isinstance(network, Namespaces) else "127.0.0.1"
    assert f"scheduler at {scheduler}:" in log_two
    assert _wait_no_processes(tmp_path) == []


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="the CPU has no bfloat16 instructions")
def test_dist_sync_in_bfloat16_when_asked(tmp_path, network):
    # `auto` keeps distributed CPU jobs in float32; precision=bfloat16 must still work there.
    codes = _wait(_start_hosts(tmp_path, network, kv_store="dist_sync", epochs="2",
                               precision="bfloat16"))
    one, two = _log(tmp_path, "algo-1"), _log(tmp_path, "algo-2")
    assert codes == {"algo-1": 0, "algo-2": 0}, one + two
    for log in (one, two):
        assert "mixed precision: convolutions in bfloat16" in log and "epoch 1 batch 2/2" in log
    rows = [json.loads(line) for line in
            (tmp_path / "algo-1/output/data/metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert all(row["cross_entropy"] < 1e3 and row["smooth_l1"] < 1e3 for row in rows), rows
    assert _wait_no_processes(tmp_path) == []


def test_dist_async_runs_to_completion(tmp_path, network):
    codes = _wait(_start_hosts(tmp_path, network, kv_store="dist_async"))
    assert codes == {"algo-1": 0, "algo-2": 0}, _log(tmp_path, "algo-1") + _log(tmp_path, "algo-2")
    assert (tmp_path / "algo-1/model/model_algo_1-0000.params").is_file()
    assert "is a dist_async worker" in _log(tmp_path, "algo-2")
    assert _wait_no_processes(tmp_path) == []


def test_early_stopping_ends_both_hosts_in_the_same_epoch(tmp_path, network):
    # A vanishing learning rate cannot double the mAP: epoch 1 is no improvement -> stop.
    codes = _wait(_start_hosts(tmp_path, network, kv_store="dist_sync", epochs="4",
                               early_stopping="True", early_stopping_min_epochs="1",
                               early_stopping_patience="1", early_stopping_tolerance="1.0",
                               learning_rate="0.000001"))
    one, two = _log(tmp_path, "algo-1"), _log(tmp_path, "algo-2")
    assert codes == {"algo-1": 0, "algo-2": 0}, one + two
    assert "early stopping after epoch 1" in one
    for log in (one, two):
        assert "epoch 1 batch 2/2" in log and "epoch 2 batch" not in log
    assert _wait_no_processes(tmp_path) == []


def test_a_failing_worker_fails_the_job_on_every_host(tmp_path, network):
    processes = {}
    port = free_port()
    for host in HOSTS:  # algo-2 asks for a batch larger than its shard: fails after joining
        base = tmp_path / host
        _host_tree(base, host, network.interface(host), kv_store="dist_sync",
                   mini_batch_size="16" if host == "algo-2" else "2")
        env = cli_env(base, SSD_SCHEDULER_PORT=str(port))
        processes[host] = subprocess.Popen(
            network.command(host, [sys.executable, "-m", "ssd_sagemaker", "train"]), env=env,
            stdout=open(base / "train.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
    codes = _wait(processes, timeout=300)
    assert codes == {"algo-1": 1, "algo-2": 1}, _log(tmp_path, "algo-1") + _log(tmp_path, "algo-2")
    failure_two = (tmp_path / "algo-2/output/failure").read_text()
    failure_one = (tmp_path / "algo-1/output/failure").read_text()
    assert failure_two.startswith("ClientError: mini_batch_size=16 is larger than the ")
    assert "Training failed on host algo-2: ClientError: mini_batch_size=16" in failure_one
    assert not (tmp_path / "algo-1/output/success").exists()
    assert _wait_no_processes(tmp_path) == []


def _wait_for_line(path, text, process, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in path.read_text():
            return
        assert process.poll() is None, path.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {path} after {timeout} s")


@pytest.mark.parametrize("lost, survivor", [("algo-2", "algo-1"), ("algo-1", "algo-2")])
def test_a_lost_host_ends_the_other_within_a_second(tmp_path, network, lost, survivor):
    """Every process of one host killed at once mid-training (its instance went away): the
    other host notices through the control channel instead of hanging in dist_sync, writes a
    failure file naming the lost host and stops its parameter-server roles within a second,
    leaving no process behind."""
    processes = _start_hosts(tmp_path, network, kv_store="dist_sync", epochs="5")
    for host, process in processes.items():  # both are inside the first epoch
        _wait_for_line(tmp_path / host / "train.log", "epoch 0 batch 1/", process)
    victims = _processes_of(tmp_path / lost)
    assert len(victims) >= 2  # its worker and its parameter server (and scheduler)
    for pid in victims:
        os.kill(pid, 9)
    # The host is lost once its worker is gone: a killed process closes its sockets only
    # after the kernel has freed its memory (0.4 s per GB measured on this busy machine).
    processes[lost].wait(timeout=30)
    lost_at, lost_wall = time.monotonic(), time.time()
    try:
        code = processes[survivor].wait(timeout=60)
    finally:
        exited = time.monotonic() - lost_at
        _wait(processes, timeout=1)
    log = _log(tmp_path, survivor)
    assert code == 1, log[-3000:]
    failure_file = tmp_path / survivor / "output/failure"
    reported = failure_file.stat().st_mtime - lost_wall
    assert reported < 1.0, f"{survivor} wrote its failure file {reported:.2f} s after the loss"
    # Its own exit then also waits for the kernel to free its memory (measured 0.6-0.9 s
    # after the loss on a machine running ~12 processes per core).
    assert exited < 2.0, f"{survivor} exited {exited:.2f} s after the loss"
    failure = failure_file.read_text()
    assert failure.startswith(f"AlgorithmError: Training failed on host {lost}: lost contact "
                              f"with it"), failure
    assert f"This host ({survivor}) stopped with it." in failure
    assert "Traceback" not in failure
    print(f"{lost} lost: {survivor} reported after {reported:.2f} s, exited after {exited:.2f} s")
    assert _wait_no_processes(tmp_path) == []


def test_a_host_that_never_joins_is_named(tmp_path, network):
    base = tmp_path / "algo-1"
    _host_tree(base, "algo-1", network.interface("algo-1"))
    env = cli_env(base, SSD_SCHEDULER_PORT=str(free_port()), SSD_JOIN_TIMEOUT="5")
    result = subprocess.run(network.command("algo-1", [sys.executable, "-m", "ssd_sagemaker",
                                                       "train"]),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout[-2000:]
    failure = (base / "output/failure").read_text()
    assert "Not every host of algo-1, algo-2 joined the training job within 5 s" in failure
    assert _wait_no_processes(tmp_path) == []


def _equal_positive_batch(path):
    """Four images, different colours, the same box (so every image has as many positive
    anchors: SSD's loss is normalised by positives, per worker), with their targets."""
    import cv2
    import mxnet as mx
    import numpy as np
    from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
    from mxnet import autograd

    from ssd_sagemaker.data.transforms.presets import MEAN, STD
    from ssd_sagemaker.model.network import build_network

    net = build_network("vgg-16", 300, ["a", "b"])
    net.save_parameters(str(path / "initial.params"))
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 300, 300)))
    generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                   negative_mining_ratio=-1)
    images, cls_targets, box_targets = [], [], []
    for i in range(4):
        image = np.full((300, 300, 3), 40 + 50 * i, np.uint8)
        cv2.rectangle(image, (60, 80), (200, 220), (255 - 40 * i, 30 * i, 120), -1)
        tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(mx.nd.array(image, dtype="uint8")),
                                       mean=MEAN, std=STD)
        cls, box, _ = generator(anchors, None, mx.nd.array([[[60, 80, 200, 220]]]),
                                mx.nd.array([[[i % 2]]]))
        images.append(tensor), cls_targets.append(cls[0]), box_targets.append(box[0])
    mx.nd.save(str(path / "batch.nd"), [mx.nd.stack(*images), mx.nd.stack(*cls_targets),
                                        mx.nd.stack(*box_targets)])


def _run_workers(tmp_path, commands, timeout=300):
    """A scheduler, a server per host and one worker per command, on 127.0.0.1, as the
    product starts them; each worker's output (the roles are stopped, none left behind)."""
    from ssd_sagemaker.environment import ResourceConfig
    from ssd_sagemaker.training.distributed import Cluster, ParameterServerRoles

    port = free_port()
    addresses = {host: "127.0.0.1" for host in HOSTS}
    clusters = [Cluster(ResourceConfig(host, HOSTS, network_interface_name="lo"), addresses,
                        port, "dist_sync") for host in HOSTS]
    roles = [ParameterServerRoles(cluster).start() for cluster in clusters]
    workers = [subprocess.Popen(command, env=dict(cli_env(tmp_path),
                                                  **cluster.role_environment("worker")),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for command, cluster in zip(commands, clusters)]
    outputs = []
    try:
        for worker in workers:
            output, _ = worker.communicate(timeout=timeout)
            assert worker.returncode == 0, output
            outputs.append(output)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        for role in roles:
            role.stop(grace=20)
    assert all(p.poll() is not None for role in roles for p in role.processes)
    return outputs


def test_one_dist_sync_step_of_two_workers_equals_one_worker_with_twice_the_batch(tmp_path):
    import mxnet as mx
    import numpy as np

    _equal_positive_batch(tmp_path)
    script = [sys.executable, str(Path(__file__).with_name("dist_step_worker.py")),
              str(tmp_path / "initial.params"), str(tmp_path / "batch.nd")]
    single = subprocess.run(script + [str(tmp_path / "single.params")], env=cli_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr

    outputs = _run_workers(tmp_path, [script + [str(tmp_path / f"worker{i}.params"), "dist_sync"]
                                      for i in range(len(HOSTS))])
    assert all(output is not None for output in outputs)

    def load(name):
        return {k: v.asnumpy() for k, v in mx.nd.load(str(tmp_path / name)).items()}

    single_weights, initial = load("single.params"), load("initial.params")
    for name in ("worker0.params", "worker1.params"):
        weights = load(name)
        for key, value in single_weights.items():
            np.testing.assert_allclose(weights[key], value, rtol=1e-3, atol=1e-5, err_msg=key)
    moved = [k for k, v in single_weights.items() if not np.allclose(v, initial[k])]
    assert len(moved) > 30  # the step changed the weights: the comparison is meaningful


def _reports(outputs):
    """The JSON lines each dist_init_worker printed, by rank."""
    reports = {}
    for output in outputs:
        for line in output.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                reports[report["rank"]] = report
    return reports


def test_no_worker_pushes_before_rank_0_has_initialised_the_servers(tmp_path):
    """Rank 0 reaches the kvstore 4 s late; rank 1, from its own weights, is held until rank
    0's weights are on the servers and in its own parameters, and the one step both take
    equals the step computed here from rank 0's weights and both batches."""
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    worker = str(Path(__file__).with_name("dist_init_worker.py"))
    delay = 4.0
    reports = _reports(_run_workers(tmp_path, [
        [sys.executable, worker, str(tmp_path / f"worker{i}.params"), str(delay), "shared"]
        for i in range(len(HOSTS))]))
    assert reports[1]["initialised_after"] > delay - 0.5, reports[1]
    assert reports[1]["initial"] == reports[0]["initial"]
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize()
    for name, value in reports[0]["initial"].items():
        net.collect_params()[name].set_data(mx.nd.array(value))
    gradients = {name: np.zeros_like(np.array(value)) for name, value in
                 reports[0]["initial"].items()}
    for rank in (0, 1):
        data = mx.nd.arange(6 * (rank + 1), 6 * (rank + 2)).reshape((2, 3)) / 10
        with autograd.record():
            loss = (net(data) ** 2).sum()
        loss.backward()
        for name, param in net.collect_params().items():
            gradients[name] += param.grad().asnumpy()
    expected = {name: np.array(value) - 0.1 * gradients[name] / 2
                for name, value in reports[0]["initial"].items()}
    for rank in (0, 1):
        weights = mx.nd.load(str(tmp_path / f"worker{rank}.params"))
        for name, value in expected.items():
            short = name.split("_", 1)[1]  # dense0_weight -> weight (save_parameters' names)
            np.testing.assert_allclose(weights[short].asnumpy(), value, rtol=1e-5,
                                       err_msg=f"rank {rank} {name}")


def test_a_weight_pulled_after_the_gradient_merge_is_the_gradient_sum(tmp_path):
    """What `initialise_kvstore` rules out, forced: with the update on the workers, the
    servers keep the summed gradient as a key's value, so a weight pull served after the
    first merge hands a worker the gradient sum as its weight."""
    import numpy as np

    worker = str(Path(__file__).with_name("dist_init_worker.py"))
    reports = _reports(_run_workers(tmp_path, [
        [sys.executable, worker, str(tmp_path / f"worker{i}.params"), "0", "late-pull"]
        for i in range(len(HOSTS))]))
    late = reports[0]
    np.testing.assert_allclose(late["pulled_weight"], late["summed_gradient"], rtol=1e-6)
    assert not np.allclose(reports[1]["pulled_weight"], late["summed_gradient"])


def _listening_addresses(pid):
    """The IPv4 addresses process `pid`'s listening TCP sockets are bound to."""
    import socket
    import struct

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            address = fields[1].split(":")[0]
            addresses.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return addresses


def test_the_parameter_server_listens_only_on_the_cluster_interface(tmp_path):
    """With `network_interface_name` (DMLC_INTERFACE), ps-lite's server binds that interface's
    address, not every interface and not the host name's: algo-2 resolves to 127.0.0.2 here,
    its interface `lo` has 127.0.0.1, and 127.0.0.1 alone is what its server listens on."""
    from ssd_sagemaker.environment import ResourceConfig
    from ssd_sagemaker.training.distributed import Cluster, ParameterServerRoles

    addresses = {"algo-1": "127.0.0.1", "algo-2": "127.0.0.2"}
    cluster = Cluster(ResourceConfig("algo-2", HOSTS, network_interface_name="lo"),
                      addresses, free_port(), "dist_sync")
    roles = ParameterServerRoles(cluster).start()  # algo-2: a server, no scheduler
    try:
        server, listening = roles.processes[0], set()
        deadline = time.time() + 60
        while time.time() < deadline and not listening:
            listening = _listening_addresses(server.pid)
            time.sleep(0.5)
    finally:
        roles.stop(grace=0.0)
    assert len(roles.processes) == 1 and listening == {"127.0.0.1"}
