"""Training data: channels, annotations, transforms, loaders and the synthetic demo set."""
