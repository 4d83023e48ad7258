"""distributed.py's decisions without processes: kvstore choice, host resolution with retries
and a deadline, the DMLC variables of each role, the scheduler port override."""

import logging

import pytest

from ssd_sagemaker.environment import ResourceConfig
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.training.distributed import (Cluster, choose_kv_store, make_cluster,
                                                resolve_addresses)

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
    assert resolve_addresses(("algo-1", "algo-2"), {}, resolve, sleeps.append) == \
        {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"}
    assert attempts["algo-2"] == 3 and len(sleeps) == 2


def test_unresolvable_hosts_are_named_after_the_deadline():
    def resolve(host):
        raise OSError("unknown")

    with pytest.raises(ClientError) as error:
        resolve_addresses(("algo-1", "algo-2"), {"SSD_HOST_RESOLVE_TIMEOUT": "0"}, resolve,
                          lambda seconds: None)
    assert "algo-1, algo-2" in str(error.value) and "SSD_HOST_RESOLVE_TIMEOUT" in str(error.value)


def test_test_only_override_skips_dns():
    environ = {"SSD_HOST_ADDRESSES": "algo-1=127.0.0.1,algo-2=127.0.0.2"}
    assert resolve_addresses(("algo-1", "algo-2"), environ, lambda h: 1 / 0) == \
        {"algo-1": "127.0.0.1", "algo-2": "127.0.0.2"}


def test_role_environment_follows_the_contract():
    cluster = Cluster(("algo-1", "algo-2"), "algo-2", {"algo-1": "10.0.0.1", "algo-2": "10.0.0.2"},
                      8000, "dist_sync")
    assert not cluster.is_master
    assert cluster.role_environment("server") == {
        "DMLC_ROLE": "server", "DMLC_PS_ROOT_URI": "10.0.0.1", "DMLC_PS_ROOT_PORT": "8000",
        "DMLC_NUM_SERVER": "2", "DMLC_NUM_WORKER": "2", "DMLC_NODE_HOST": "10.0.0.2"}


def test_scheduler_port_default_and_override():
    environ = {"SSD_HOST_ADDRESSES": "algo-1=127.0.0.1,algo-2=127.0.0.1"}
    assert make_cluster(TWO, "dist_sync", environ).scheduler_port == 8000
    assert make_cluster(TWO, "dist_sync", dict(environ, SSD_SCHEDULER_PORT="9123")).scheduler_port == 9123
    with pytest.raises(ClientError, match="SSD_SCHEDULER_PORT='http' is not a TCP port"):
        make_cluster(TWO, "dist_sync", dict(environ, SSD_SCHEDULER_PORT="http"))
