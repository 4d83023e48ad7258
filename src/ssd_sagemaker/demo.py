"""The demo job (`ssd-sagemaker demo-data`, scripts/demo.sh): the synthetic shapes written as
SageMaker channels — a training set and a held-out validation set drawn with another seed —
plus the configuration files of a short CPU training job on them.

The settings aim at the most learning per CPU second: ResNet-50 (about a quarter of VGG-16's
compute per image), no augmentation (it slows a short job's learning down; the issue measured
it), Adam, batch 2 (more updates per image: from scratch, one epoch at batch 2 reached held-out
mAP 0.40, one at batch 4 0.00), and the plain style of the synthetic shapes (grey ground, one
colour per class, larger shapes: on the varied style a from-scratch SSD stayed below mAP 0.03
for 144 steps), 8 epochs with the learning rate divided by 10 for the last two (from scratch,
float32: held-out mAP 0.21, 0.68, 0.66, 0.60, 0.44, 0.59, 0.85, 0.91; at 5 epochs the drawn
picture boxed one object twice and missed another; at 8, 10 of 16 held-out images have every
object boxed once at score >= 0.5, none twice). The
ImageNet weights are used when they are in the model cache (`ssd-sagemaker fetch-weights`);
otherwise the demo trains from scratch, and says which. bench/README.md has the run."""

from __future__ import annotations

import json
import logging

from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.environment import Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.model.cache import model_cache_dir
from ssd_sagemaker.variables import SAGEMAKER_BASE_DIR

LOG = logging.getLogger(__name__)

DEMO_BASE_NETWORK = "resnet-50"
DEMO_TRAIN_IMAGES = 96
DEMO_VALIDATION_IMAGES = 16
DEMO_PLAIN_DATA = True
DEMO_HYPERPARAMETERS = {
    "num_classes": "3", "base_network": DEMO_BASE_NETWORK, "image_shape": "300",
    "epochs": "8", "mini_batch_size": "2", "optimizer": "adam", "learning_rate": "0.001",
    "lr_scheduler_step": "6", "augmentation": "none",
}
CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


def demo_hyperparameters(train_images: int, pretrained: bool) -> dict[str, str]:
    """The demo job's hyperparameters.json (strings, as SageMaker passes them)."""
    return dict(DEMO_HYPERPARAMETERS, num_training_samples=str(train_images),
                use_pretrained_model="1" if pretrained else "0")


def pretrained_weights_cached() -> bool:
    """Whether the demo's base network has its ImageNet weights in the model cache (say so)."""
    path = model_cache_dir() / BACKBONES[DEMO_BASE_NETWORK].weights_file
    if path.is_file():
        LOG.info("demo: the ImageNet weights of %s are in %s: training starts from them "
                 "(use_pretrained_model=1)", DEMO_BASE_NETWORK, path)
        return True
    LOG.info("demo: %s is not there, so training starts from scratch (use_pretrained_model=0); "
             "`ssd-sagemaker fetch-weights` downloads it", path)
    return False


def write_demo_job(paths: Paths, train_images: int, validation_images: int, seed: int) -> None:
    """The train and held-out validation channels (seeds `seed` and `seed + 1`: no image in
    common), inputdataconfig.json, and hyperparameters.json unless one is already there. A
    tree that cannot be written (no permission, a file in the way, a full disk) is named."""
    try:
        _write_demo_job(paths, train_images, validation_images, seed)
    except OSError as error:
        raise ClientError(
            f"cannot write the demo job under {paths.base} ({error.strerror or error}: "
            f"{error.filename or paths.base}): set {SAGEMAKER_BASE_DIR} to a folder you can "
            f"write, e.g. {SAGEMAKER_BASE_DIR}=$PWD/opt_ml.") from None


def _write_demo_job(paths: Paths, train_images: int, validation_images: int, seed: int) -> None:
    for channel, count, channel_seed in (("train", train_images, seed),
                                         ("validation", validation_images, seed + 1)):
        write_annotated_channel(paths.channel_dir(channel),
                                paths.channel_dir(f"{channel}_annotation"), count, channel_seed,
                                prefix=channel, plain=DEMO_PLAIN_DATA)
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    channels = {name: {"ContentType": "image/jpeg", "TrainingInputMode": "File",
                       "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                for name in CHANNELS}
    paths.input_data_config_file.write_text(json.dumps(channels, indent=2) + "\n")
    if paths.hyperparameters_file.exists():
        LOG.info("demo: keeping the existing %s", paths.hyperparameters_file)
    else:
        hyperparameters = demo_hyperparameters(train_images, pretrained_weights_cached())
        paths.hyperparameters_file.write_text(json.dumps(hyperparameters, indent=2) + "\n")
    LOG.info("demo data: %d training and %d held-out validation images under %s", train_images,
             validation_images, paths.data_dir)
