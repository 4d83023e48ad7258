"""One dist_sync worker of a tiny network, for test_distributed.py (not a test itself).
Usage: OUTPUT DELAY MODE. Each rank starts from different weights (seeded by rank) and its
own batch; rank 0 waits DELAY seconds before touching the kvstore, so any worker that could
push before rank 0's weights reach the servers would. MODE `shared`: `initialise_kvstore`
first, then one step; `late-pull`: the ordering it rules out, forced with the raw kvstore
(rank 0 pulls the weight only once the gradients are summed). Writes the weights and,
as JSON lines on stdout, what happened."""

import json
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon

from ssd_sagemaker.training.distributed import initialise_kvstore


def main(output: str, delay: float, mode: str) -> None:
    kvstore = mx.kv.create("dist_sync")
    rank = kvstore.rank
    mx.random.seed(rank)
    net = gluon.nn.Dense(4, in_units=3)
    net.initialize(mx.init.Uniform(1.0))
    data = mx.nd.arange(6 * (rank + 1), 6 * (rank + 2)).reshape((2, 3)) / 10
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                            kvstore=kvstore, update_on_kvstore=False)
    if rank == 0:
        time.sleep(delay)
    started = time.monotonic()
    if mode == "shared":
        initialise_kvstore(trainer)
        print(json.dumps({"rank": rank, "initialised_after": time.monotonic() - started,
                          "initial": {k: v.data().asnumpy().tolist()
                                      for k, v in net.collect_params().items()}}), flush=True)
        with autograd.record():
            loss = (net(data) ** 2).sum()
        loss.backward()
        trainer.step(kvstore.num_workers)
    else:
        weight = net.weight.data()
        with autograd.record():
            loss = (net(data) ** 2).sum()
        loss.backward()
        kvstore.init(0, weight)
        if rank == 0:  # the pull reaches the servers after both gradients were summed
            kvstore.pushpull(0, net.weight.grad())
            mx.nd.waitall()
            kvstore.pull(0, out=weight)
        else:
            kvstore.pull(0, out=weight)
            mx.nd.waitall()
            kvstore.pushpull(0, net.weight.grad())
        mx.nd.waitall()
        print(json.dumps({"rank": rank, "summed_gradient": net.weight.grad().asnumpy().tolist(),
                          "pulled_weight": weight.asnumpy().tolist()}), flush=True)
    net.save_parameters(output)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
