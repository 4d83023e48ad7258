"""The values of the `augmentation` hyperparameter, named here so that the hyperparameter
table (floor 1) need not import the image code that implements them
(`data/transforms/augmentation.py`, whose `AUGMENTATIONS` a test holds equal to this table)."""

AUGMENTATION_NAMES = ("ssd", "flip", "none")
