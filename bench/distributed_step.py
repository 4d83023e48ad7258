"""Per-step time of a dist_sync training step split into compute (forward + backward) and
synchronisation (gradient push/pull through the parameter servers + update), for 1 worker
(no kvstore) and 2 workers (scheduler + 2 servers + 2 workers on loopback, started by the
project's own ParameterServerRoles), with the bytes each worker moves per step.
Not a test: run by hand, `python bench/distributed_step.py [--steps 3] [--batch 2]`."""

import argparse
import json
import os
import subprocess
import sys
import time

HOSTS = ("algo-1", "algo-2")


def worker(steps: int, batch: int, distributed: bool) -> dict:
    """Run `steps` timed steps (after one warm-up) and return the timings."""
    import mxnet as mx
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    sys.path.insert(0, os.path.dirname(__file__))
    from train_step import fixed_batch

    from ssd_sagemaker.model.network import build_network

    mx.random.seed(0)
    net = build_network("vgg-16", 300, ["a", "b", "c"])
    images, cls_targets, box_targets = fixed_batch(net, 300, batch)
    kvstore = mx.kv.create("dist_sync") if distributed else None
    workers = kvstore.num_workers if kvstore else 1
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "momentum": 0.9},
                            kvstore=kvstore, update_on_kvstore=False if kvstore else None)
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = SSDMultiBoxLoss()
    compute, sync = [], []
    for step in range(steps + 1):
        started = time.perf_counter()
        with autograd.record():
            cls_preds, box_preds, _ = net(images)
            loss, _, _ = loss_fn([cls_preds], [box_preds], [cls_targets], [box_targets])
            autograd.backward(loss)
        mx.nd.waitall()
        computed = time.perf_counter()
        trainer.step(workers)
        mx.nd.waitall()
        if step:  # the first step builds graphs and buffers
            compute.append(computed - started)
            sync.append(time.perf_counter() - computed)
    parameters = sum(p.data().size for p in net.collect_params().values()
                     if p.grad_req != "null")
    return {"compute": sum(compute) / steps, "sync": sum(sync) / steps,
            "bytes": 2 * 4 * parameters if distributed else 0}


def two_workers(steps: int, batch: int) -> list[dict]:
    from ssd_sagemaker.environment import ResourceConfig
    from ssd_sagemaker.serving.loopback import free_port
    from ssd_sagemaker.training.distributed import Cluster, ParameterServerRoles

    port = free_port()
    addresses = {host: "127.0.0.1" for host in HOSTS}
    clusters = [Cluster(ResourceConfig(host, HOSTS), addresses, port, "dist_sync")
                for host in HOSTS]
    roles = [ParameterServerRoles(cluster).start() for cluster in clusters]
    command = [sys.executable, __file__, "--worker", "--steps", str(steps), "--batch", str(batch)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **cluster.role_environment("worker")))
                 for cluster in clusters]
    try:
        return [json.loads(process.communicate(timeout=900)[0].strip().splitlines()[-1])
                for process in processes]
    finally:
        for role in roles:
            role.stop(grace=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="images per worker and step")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps, args.batch, distributed=True)))
        return
    one = worker(args.steps, args.batch, distributed=False)
    two = two_workers(args.steps, args.batch)
    print(f"VGG-16 SSD300, {args.batch} images per worker and step, {args.steps} timed steps")
    print(f"1 worker : compute {one['compute']:.2f} s + update {one['sync']:.3f} s per step")
    for rank, result in enumerate(two):
        print(f"2 workers, worker {rank}: compute {result['compute']:.2f} s + push/pull/update "
              f"{result['sync']:.3f} s per step, {result['bytes'] / 1e6:.1f} MB moved per step")
    mean_two = sum(r["compute"] + r["sync"] for r in two) / 2
    print(f"step time ratio 2 workers / 1 worker: {mean_two / (one['compute'] + one['sync']):.2f}"
          f" (both workers share this machine's 2 cores); sync share of a 2-worker step: "
          f"{sum(r['sync'] for r in two) / 2 / mean_two:.0%}")


if __name__ == "__main__":
    main()
