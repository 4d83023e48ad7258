"""Where a run starts, decided in one place: the newest intact checkpoint (resume), else an
earlier artifact from the `model` channel (warm start, incremental training), else the
pretrained base's ImageNet weights, else random initialisation. The choice between the last
three is made up front, before the data is read, so a model channel that cannot warm-start
this network is refused at once; `StartingPoint.enter` then puts the learner there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mxnet as mx

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.model.network import model_cache_dir, pretrained_base_file
from ssd_sagemaker.training import warm_start
from ssd_sagemaker.training.distributed import DistributedJob
from ssd_sagemaker.training.loop import Learner
from ssd_sagemaker.training.state import TrainingState


@dataclass(frozen=True)
class StartingPoint:
    """The first weights: an earlier artifact's (`warm`), else the pretrained base's file
    (`pretrained`, given to the network as it is built), else neither (random)."""

    warm: dict[str, mx.nd.NDArray] | None = None
    pretrained: Path | None = None

    def enter(self, learner: Learner, state: TrainingState,
              cluster: DistributedJob | None = None) -> int:
        """Load the warm-start weights, then resume the learner and the run's state from a
        checkpoint, if any (it overrides them); the epoch to start from, which every host of
        a distributed job must agree on."""
        if self.warm is not None:
            warm_start.load_weights(learner.net, self.warm)
        start_epoch = state.resume(learner)
        if cluster is not None and cluster.agree("start_epoch", start_epoch) != start_epoch:
            raise ClientError(
                f"This host's checkpoint starts at epoch {start_epoch}, the master's at another "
                f"epoch; give every host the same checkpoint folder contents (or none).")
        return start_epoch


def starting_point(model_channel: Path | None, network: NetworkIdentity,
                   use_pretrained: bool) -> StartingPoint:
    """Decided once, up front: the `model_channel` folder's artifact (when the job has that
    channel) is checked against `network` and read here."""
    if model_channel is not None:
        with warm_start.located_artifact(model_channel) as artifact:
            warm_start.check_compatible(artifact, network)
            return StartingPoint(warm=warm_start.read_weights(artifact))
    if use_pretrained:
        return StartingPoint(pretrained=pretrained_base_file(network.base_network,
                                                             model_cache_dir()))
    return StartingPoint()
