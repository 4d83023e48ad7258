"""The decisions the wiring relies on: class names (export.py), batch-size and sample-count
checks (schedule.py), and the out-of-memory message (epochs.py)."""

import logging

import mxnet as mx
import pytest

from plans import optimization
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training import epochs, export, schedule


def _hp(**values):
    return parse_hyperparameters(dict({"num_classes": "2", "num_training_samples": "10"}, **values))


def test_class_names_fill_the_gaps():
    assert export.class_names(3, {1: "dog"}) == ("class_0", "dog", "class_2")


def test_batch_larger_than_the_data_is_refused():
    with pytest.raises(ClientError,
                       match="mini_batch_size=32 is larger than the 5 training images"):
        schedule.check_batch_size(optimization(_hp()), 5)


def test_sample_count_disagreement_warns_with_both_numbers(caplog):
    with caplog.at_level(logging.WARNING):
        schedule.check_batch_size(optimization(_hp(mini_batch_size="2")), 7)
    assert "num_training_samples=10 but the train channel has 7 images" in caplog.text


def test_out_of_memory_is_recognised_and_explained():
    error = mx.base.MXNetError("[12:00:00] src/storage/./pooled_storage_manager.h:157: "
                               "cudaMalloc retry failed: out of memory")
    assert epochs._is_out_of_memory(error)
    assert not epochs._is_out_of_memory(mx.base.MXNetError("Shape inconsistent"))
    message = str(epochs._out_of_memory_error(NetworkIdentity("resnet-50", 512, 2), 64,
                                               [mx.gpu(0), mx.gpu(1)]))
    for fragment in ("resnet-50", "image_shape=512", "mini_batch_size=64", "2 device(s)",
                     "32 images each"):
        assert fragment in message
