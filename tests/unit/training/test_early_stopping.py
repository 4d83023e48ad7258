"""EarlyStopping: the documented min-epochs / patience / relative-tolerance rule."""

import logging

from ssd_sagemaker.training.early_stopping import EarlyStopping


def _run(stopper, scores):
    """The 0-based epoch after which training stops, or None."""
    for epoch, score in enumerate(scores):
        if stopper.update(epoch, score):
            return epoch
    return None


def test_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(True, min_epochs=1, patience=2, tolerance=0.0)
    assert _run(stopper, [0.5, 0.4, 0.3, 0.9]) == 2
    assert (stopper.best_map, stopper.best_epoch) == (0.5, 0)


def test_min_epochs_delays_the_stop():
    stopper = EarlyStopping(True, min_epochs=5, patience=1, tolerance=0.0)
    assert _run(stopper, [0.5, 0.4, 0.4, 0.3, 0.2, 0.1]) == 4


def test_relative_tolerance_decides_improvement():
    stopper = EarlyStopping(True, min_epochs=1, patience=1, tolerance=0.1)
    # 0.54 is +8 % on 0.5: below the 10 % tolerance, not an improvement -> stop.
    assert _run(stopper, [0.5, 0.54]) == 1
    stopper = EarlyStopping(True, min_epochs=1, patience=1, tolerance=0.1)
    # 0.56 is +12 %: an improvement, no stop.
    assert _run(stopper, [0.5, 0.56]) is None
    assert stopper.best_map == 0.56


def test_equal_score_at_zero_tolerance_counts_as_improvement_as_documented():
    stopper = EarlyStopping(True, min_epochs=1, patience=1, tolerance=0.0)
    assert _run(stopper, [0.5, 0.5, 0.5]) is None
    assert stopper.best_epoch == 0


def test_from_zero_only_a_positive_map_improves():
    stopper = EarlyStopping(True, min_epochs=1, patience=2, tolerance=0.5)
    assert _run(stopper, [0.0, 0.0, 0.0]) == 2
    stopper = EarlyStopping(True, min_epochs=1, patience=2, tolerance=0.5)
    assert _run(stopper, [0.0, 0.0, 0.01, 0.0]) is None


def test_disabled_never_stops_but_tracks_best():
    stopper = EarlyStopping(False, min_epochs=1, patience=1, tolerance=0.0)
    assert _run(stopper, [0.3, 0.1, 0.1, 0.1]) is None
    assert (stopper.best_map, stopper.best_epoch) == (0.3, 0)


def test_one_log_sentence_per_decision(caplog):
    stopper = EarlyStopping(True, min_epochs=1, patience=1, tolerance=0.0)
    with caplog.at_level(logging.INFO, logger="ssd_sagemaker.training.early_stopping"):
        _run(stopper, [0.5, 0.4])
    messages = [r.getMessage() for r in caplog.records]
    assert "epoch 0: mAP 0.5000 is an improvement" in messages[0]
    assert "epoch 1: mAP 0.4000 is not an improvement on 0.5000" in messages[1]
    assert messages[2].startswith("early stopping after epoch 1")
