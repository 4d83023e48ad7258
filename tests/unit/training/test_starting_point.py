"""starting_point.py: the start is decided up front (model channel, pretrained base, random)
and entered after the learner exists: warm-start weights first, a checkpoint over them."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.metrics import EpochLog
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import Checkpointer
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.loop import Learner
from ssd_sagemaker.training.starting_point import StartingPoint, starting_point
from ssd_sagemaker.training.state import TrainingState

NETWORK = NetworkIdentity.of_classes("vgg-16", 300, ("a",))


def _learner(seed):
    mx.random.seed(seed)
    net = gluon.nn.Dense(3, in_units=4, prefix="dense_")
    net.initialize(mx.init.Normal(1.0))
    return Learner(net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}),
                   [mx.cpu()])


def _state(directory):
    return TrainingState(EarlyStopping(True, min_epochs=1, patience=3, tolerance=0.0),
                         EpochLog(None), Checkpointer(directory), NETWORK)


def _warm():
    return {"dense_weight": mx.nd.full((3, 4), 0.5), "dense_bias": mx.nd.full((3,), -1.0)}


def test_without_a_checkpoint_the_warm_weights_are_the_start(tmp_path):
    learner = _learner(0)
    assert StartingPoint(warm=_warm()).enter(learner, _state(tmp_path)) == 0
    np.testing.assert_array_equal(learner.net.weight.data().asnumpy(), np.full((3, 4), 0.5))
    np.testing.assert_array_equal(learner.net.bias.data().asnumpy(), np.full((3,), -1.0))


def test_a_checkpoint_overrides_the_warm_weights_and_gives_the_epoch(tmp_path):
    trained = _learner(1)
    _state(tmp_path).save(trained, next_epoch=3)
    learner = _learner(2)
    assert StartingPoint(warm=_warm()).enter(learner, _state(tmp_path)) == 3
    np.testing.assert_array_equal(learner.net.weight.data().asnumpy(),
                                  trained.net.weight.data().asnumpy())


def test_without_model_channel_or_pretrained_base_the_start_is_random():
    assert starting_point(None, NETWORK, use_pretrained=False) == StartingPoint()


def test_a_model_channel_without_an_artifact_is_refused_up_front(tmp_path):
    with pytest.raises(ClientError, match="holds no artifact"):
        starting_point(tmp_path, NETWORK, use_pretrained=False)
