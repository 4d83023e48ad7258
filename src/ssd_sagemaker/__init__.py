"""ssd-sagemaker: a SageMaker-compatible SSD object detector (train and serve), MXNet + GluonCV."""

__version__ = "0.1.0"
