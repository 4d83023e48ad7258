"""Tune this container's hyperparameters with SageMaker automatic model tuning (SDK v2):
maximise `validation:mAP` over the learning rate, batch size, optimizer, momentum and weight
decay, then report the best training job.

Like sdk_train_deploy.py it runs in the SDK's own environment (`pip install "sagemaker>=2,<3"`
in a venv of its own: the SDK needs numpy >= 1.26, MXNet 1.9.1 numpy < 1.24):

    ~/sagemaker-sdk/bin/python examples/tune.py --max-jobs 20 --max-parallel-jobs 2 \
        --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/ssd-sagemaker:gpu \
        --role arn:aws:iam::123456789012:role/SageMakerRole --data s3://BUCKET/ssd \
        --output s3://BUCKET/ssd/tuning --num-classes 20 --num-training-samples 16551

It takes the same settings as sdk_train_deploy.py (beside it), whose estimator and channels it
uses; the tuned values replace the estimator's. The ranges lie inside the valid values of
docs/hyperparameters.md (tests/unit/test_docs.py checks them).
"""

from __future__ import annotations

import logging

from sagemaker.parameter import ParameterRange
from sagemaker.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
)
from sdk_train_deploy import METRIC_DEFINITIONS, argument_parser, estimator, training_inputs

logger = logging.getLogger("tune")


def hyperparameter_ranges() -> dict[str, ParameterRange]:
    """What the tuning job searches: SageMaker's documented tunable ranges, narrowed to where
    SSD trains well (learning rate and weight decay on a log scale)."""
    return {"learning_rate": ContinuousParameter(1e-5, 0.01, scaling_type="Logarithmic"),
            "mini_batch_size": IntegerParameter(8, 64),
            "optimizer": CategoricalParameter(["sgd", "adam", "rmsprop", "adadelta"]),
            "momentum": ContinuousParameter(0.8, 0.99),
            "weight_decay": ContinuousParameter(1e-5, 1e-2, scaling_type="Logarithmic")}


def main() -> None:
    parser = argument_parser("Tune ssd-sagemaker's hyperparameters for validation:mAP.")
    parser.add_argument("--max-jobs", type=int, default=20)
    parser.add_argument("--max-parallel-jobs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tuner = HyperparameterTuner(estimator(args),
                                objective_metric_name="validation:mAP",
                                hyperparameter_ranges=hyperparameter_ranges(),
                                metric_definitions=METRIC_DEFINITIONS,
                                objective_type="Maximize",
                                max_jobs=args.max_jobs,
                                max_parallel_jobs=args.max_parallel_jobs,
                                early_stopping_type="Auto")
    tuner.fit(training_inputs(args))
    tuner.wait()
    logger.info("best training job: %s", tuner.best_training_job())


if __name__ == "__main__":
    main()
