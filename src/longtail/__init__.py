"""longtail: train and evaluate image classifiers on class-imbalanced (long-tailed) data."""

__version__ = "0.1.0"
