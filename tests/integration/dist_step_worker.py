"""One SGD step of the SSD on a saved batch, as a single process or as one dist_sync worker
(run by test_distributed.py; not a test itself). Usage: WEIGHTS BATCH OUTPUT"""

import io
import sys

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training.distributed import initialise_kvstore
from ssd_sagemaker.training.loop import Learner, train_one_epoch
from ssd_sagemaker.training.schedule import UPDATE_ON_KVSTORE


def main(weights: str, batch_file: str, output: str) -> None:
    net = build_network("vgg-16", 300, ["a", "b"])
    net.load_parameters(weights)
    images, cls_targets, box_targets = mx.nd.load(batch_file)
    kvstore, divisor = None, 1
    if len(sys.argv) > 4 and sys.argv[4] == "dist_sync":
        kvstore = mx.kv.create("dist_sync")
        size = images.shape[0] // kvstore.num_workers
        part = slice(kvstore.rank * size, (kvstore.rank + 1) * size)
        images, cls_targets, box_targets = images[part], cls_targets[part], box_targets[part]
        divisor = kvstore.num_workers
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9},
                            kvstore=kvstore, update_on_kvstore=UPDATE_ON_KVSTORE.get("dist_sync")
                            if kvstore else None)
    if kvstore is not None:
        initialise_kvstore(trainer)  # as train does: the weights land before any push
    train_one_epoch(Learner(net, trainer, [mx.cpu()], gradient_divisor=divisor),
                    [(images, cls_targets, box_targets)], 0, MetricReporter("test", io.StringIO()))
    net.save_parameters(output)


if __name__ == "__main__":
    main(*sys.argv[1:4])
