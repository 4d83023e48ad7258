"""The narrow settings records the trainer builds from the hyperparameters, built the same way
for tests of the parts that take them."""

import dataclasses

from ssd_sagemaker.hyperparameters import Hyperparameters
from ssd_sagemaker.training.schedule import Optimization


def optimization(hp: Hyperparameters) -> Optimization:
    """The optimizer's record of `hp` (every field of `Optimization` is a hyperparameter)."""
    return Optimization(**{field.name: getattr(hp, field.name)
                           for field in dataclasses.fields(Optimization)})
