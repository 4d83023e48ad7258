"""distributed.py's decisions without processes: kvstore choice, host resolution with retries
and a deadline, the DMLC variables of each role, the cluster from the job's settings."""

import logging

import pytest

from ssd_sagemaker.environment import ResourceConfig, TrainingSettings
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.training.distributed import (
    Cluster,
    check_interface,
    choose_kv_store,
    interface_address,
    make_cluster,
    resolve_addresses,
)

ONE = ResourceConfig("algo-1", ("algo-1",))
TWO = ResourceConfig("algo-2", ("algo-1", "algo-2"))


def test_kv_store_choice(caplog):
    with caplog.at_level(logging.INFO):
        assert choose_kv_store(ONE, "dist_sync", 1) is None
        assert "kv_store=dist_sync is ignored on a single host" in caplog.text
        assert choose_kv_store(ONE, None, 2) == "device"
        assert choose_kv_store(TWO, "dist_async", 1) == "dist_async"
        assert choose_kv_store(TWO, None, 1) == "dist_sync"
        assert "2 hosts and no kv_store: using dist_sync" in caplog.text


def test_resolution_retries_until_hosts_appear():
    attempts = {"algo-2": 0}

    def resolve(host):
        if host == "algo-2":
            attempts["algo-2"] += 1
            if attempts["algo-2"] < 3:
                raise OSError("not yet")
        return {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}[host]

    sleeps = []
    assert resolve_addresses(("algo-1", "algo-2"), 300.0, resolve, sleeps.append) == \
        {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}
    assert attempts["algo-2"] == 3 and len(sleeps) == 2


def test_unresolvable_hosts_are_named_after_the_deadline():
    def resolve(host):
        raise OSError("unknown")

    with pytest.raises(ClientError) as error:
        resolve_addresses(("algo-1", "algo-2"), 0.0, resolve,
                          lambda seconds: None)
    assert "algo-1, algo-2" in str(error.value) and "SSD_HOST_RESOLVE_TIMEOUT" in str(error.value)


def test_role_environment_follows_the_contract():
    cluster = Cluster(TWO, {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"},
                      8000, "dist_sync")
    assert cluster.role_environment("server") == {
        "DMLC_ROLE": "server", "DMLC_PS_ROOT_URI": "10.0.0.1", "DMLC_PS_ROOT_PORT": "8000",
        "DMLC_NUM_SERVER": "2", "DMLC_NUM_WORKER": "2", "DMLC_NODE_HOST": "10.0.0.2"}


def test_the_cluster_interface_from_the_resource_config_is_the_one_listened_on():
    on_eth1 = ResourceConfig("algo-2", ("algo-1", "algo-2"), network_interface_name="eth1")
    environment = Cluster(on_eth1, {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}, 8000,
                          "dist_sync").role_environment("worker")
    # ps-lite reads DMLC_INTERFACE only without DMLC_NODE_HOST
    assert environment["DMLC_INTERFACE"] == "eth1" and "DMLC_NODE_HOST" not in environment


def test_an_interface_without_an_address_is_refused_by_name():
    assert interface_address("lo") == "127.0.0.1"
    check_interface("lo")
    with pytest.raises(ClientError) as error:
        check_interface("nosuch9")
    assert "network_interface_name='nosuch9'" in str(error.value)
    assert "its interfaces: " in str(error.value) and "lo" in str(error.value)
    with pytest.raises(ClientError):  # present, but without an IPv4 address
        check_interface("eth7", address_of=lambda name: None)
    elsewhere = ResourceConfig("localhost", ("localhost",), network_interface_name="nosuch9")
    with pytest.raises(ClientError, match="nosuch9"):  # train refuses before starting roles
        make_cluster(elsewhere, "dist_sync", TrainingSettings())


def test_the_cluster_takes_its_port_from_the_settings():
    local = ResourceConfig("localhost", ("localhost",))  # resolved the production way
    cluster = make_cluster(local, "dist_sync", TrainingSettings(scheduler_port=9123))
    assert (cluster.scheduler_port, cluster.scheduler_address) == (9123, "127.0.0.1")
