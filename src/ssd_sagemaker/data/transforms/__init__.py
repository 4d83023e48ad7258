"""Image and target transforms in NumPy/OpenCV (augmentation, SSD targets, the train and
validation presets), picklable so loader workers run them without MXNet."""
