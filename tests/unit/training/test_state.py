"""state.py and the parts it checkpoints: early stopping and the per-epoch history save and
restore themselves, through one checkpoint, including checkpoints written before this layout;
the history is recorded apart from its files."""

import json
from dataclasses import asdict

import mxnet as mx
import numpy as np
from mxnet import gluon

from ssd_sagemaker.metrics import METRICS_FILES, EpochLog
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.training.checkpoint import STATE_FILE, Checkpointer, CheckpointState
from ssd_sagemaker.training.early_stopping import EarlyStopping
from ssd_sagemaker.training.loop import Learner
from ssd_sagemaker.training.state import TrainingState

NETWORK = NetworkIdentity.of_classes("vgg-16", 300, ("a",))
ROWS = [{"epoch": 0, "cross_entropy": 2.5, "smooth_l1": 1.25, "validation_map": 0.125,
         "validation_map_area": 0.1, "validation_ap_per_class": None, "learning_rate": 0.01,
         "images_per_second": 3.0, "seconds": 4.0},
        {"epoch": 1, "cross_entropy": 2.0, "smooth_l1": 1.0, "validation_map": 0.25,
         "validation_map_area": 0.2, "validation_ap_per_class": {"circle": 0.2},
         "learning_rate": 0.01, "images_per_second": 3.5, "seconds": 3.5}]


def _learner(seed):
    mx.random.seed(seed)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    return Learner(net, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}),
                   [mx.cpu()])


def _state(directory, data_dir=None, patience=3):
    return TrainingState(EarlyStopping(True, min_epochs=1, patience=patience, tolerance=0.0),
                         EpochLog(data_dir), Checkpointer(directory), NETWORK)


def test_a_run_state_round_trips_through_one_checkpoint(tmp_path):
    saved = _state(tmp_path)
    saved.stopping.update(0, 0.5)
    saved.stopping.update(1, 0.25)
    for row in ROWS:
        saved.epoch_log.record(row)
    learner = _learner(0)
    saved.save(learner, next_epoch=2)

    resumed, restored = _state(tmp_path), _learner(1)
    assert resumed.resume(restored) == 2
    assert (resumed.stopping.best_map, resumed.stopping.best_epoch,
            resumed.stopping.epochs_without_improvement) == (0.5, 0, 1)
    assert resumed.epoch_log.rows == ROWS
    np.testing.assert_array_equal(restored.net.weight.data().asnumpy(),
                                  learner.net.weight.data().asnumpy())
    # Only state is saved: the settings come from the resumed run's hyperparameters.
    description = json.loads((tmp_path / STATE_FILE).read_text())
    assert description["early_stopping"] == {"best_map": 0.5, "best_epoch": 0,
                                             "epochs_without_improvement": 1}
    assert description["history"] == ROWS


def test_a_checkpoint_of_the_previous_layout_resumes(tmp_path):
    """Before: `early_stopping` was `asdict(EarlyStopping)`, settings included."""
    old = EarlyStopping(False, min_epochs=9, patience=9, tolerance=0.5, best_map=0.75,
                        best_epoch=1, epochs_without_improvement=2)
    learner = _learner(0)
    Checkpointer(tmp_path).save(learner.net, learner.trainer, CheckpointState(
        next_epoch=3, network=NETWORK.to_json(), early_stopping=asdict(old), history=ROWS))

    resumed = _state(tmp_path, patience=4)
    assert resumed.resume(_learner(1)) == 3
    stopping = resumed.stopping
    assert (stopping.best_map, stopping.best_epoch, stopping.epochs_without_improvement) == (
        0.75, 1, 2)
    assert (stopping.enabled, stopping.min_epochs, stopping.patience, stopping.tolerance) == (
        True, 1, 4, 0.0)
    assert resumed.epoch_log.rows == ROWS


def test_no_checkpoint_starts_at_epoch_zero_with_fresh_parts(tmp_path):
    state = _state(tmp_path / "none")
    assert state.resume(_learner(1)) == 0
    assert (state.stopping.best_map, state.epoch_log.rows) == (None, [])


def test_recording_a_row_writes_no_file_until_asked(tmp_path):
    log = EpochLog(tmp_path)
    log.record(dict(ROWS[0], extra="dropped"))
    assert list(tmp_path.iterdir()) == []
    log.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(METRICS_FILES)
    assert [json.loads(line) for line in
            (tmp_path / "metrics.jsonl").read_text().splitlines()] == [ROWS[0]]


def test_a_host_without_metrics_files_keeps_its_rows_and_writes_nothing(tmp_path):
    log = EpochLog(None)
    log.record(ROWS[0])
    log.write()
    assert log.state_dict() == [ROWS[0]] and list(tmp_path.iterdir()) == []


def test_the_best_epochs_weights_come_back_when_a_later_epoch_was_worse(tmp_path):
    state, learner = _state(tmp_path), _learner(0)
    state.stopping.update(0, 0.5)
    state.checkpointer.save_best(learner.net)
    best = learner.net.weight.data().asnumpy().copy()
    state.stopping.update(1, 0.25)
    learner.net.weight.set_data(mx.nd.zeros((3, 4)))
    state.restore_best(learner, epochs_run=2)
    np.testing.assert_array_equal(learner.net.weight.data().asnumpy(), best)


def test_the_last_epoch_is_kept_when_it_was_the_best(tmp_path):
    state, learner = _state(tmp_path), _learner(0)
    state.stopping.update(0, 0.5)
    learner.net.weight.set_data(mx.nd.zeros((3, 4)))
    state.restore_best(learner, epochs_run=1)  # no best-weights file needed: nothing is loaded
    assert not learner.net.weight.data().asnumpy().any()
