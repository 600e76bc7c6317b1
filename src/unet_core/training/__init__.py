"""Training engine: data preparation, augmentation, losses, metrics and the training generator."""
