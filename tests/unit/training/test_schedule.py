"""schedule.py: lr steps in updates, and which optimizer takes which setting."""

import logging

import pytest

from ssd_sagemaker.training.schedule import (
    learning_rate_schedule,
    optimizer_settings,
    updates_per_epoch,
)


def test_updates_per_epoch_rounds_up():
    assert updates_per_epoch(100, 32) == 4
    assert updates_per_epoch(96, 32) == 3


def test_steps_become_update_counts_and_multiply_the_rate():
    schedule = learning_rate_schedule(0.1, (2, 4), 0.5, batches_per_epoch=10)
    assert schedule.step == [20, 40]
    assert schedule(20) == pytest.approx(0.1)
    assert schedule(21) == pytest.approx(0.05)
    assert schedule(41) == pytest.approx(0.025)
    assert learning_rate_schedule(0.1, (), 0.5, 10) is None


@pytest.mark.parametrize("optimizer, keys, ignored", [
    ("sgd", {"learning_rate", "momentum", "wd"}, []),
    ("rmsprop", {"learning_rate", "wd"}, ["momentum"]),
    ("adam", {"learning_rate"}, ["momentum", "weight_decay"]),
    ("adadelta", {"learning_rate"}, ["momentum", "weight_decay"]),
])
def test_optimizer_settings(optimizer, keys, ignored, caplog):
    with caplog.at_level(logging.INFO):
        settings = optimizer_settings(optimizer, 0.01, 0.9, 0.0005, None)
    assert set(settings) == keys
    for name in ignored:
        assert f"optimizer {optimizer} ignores {name}" in caplog.text
