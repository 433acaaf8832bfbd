"""inception-retrain: which layers does a Dropout layer actually affect? Measured, on a schedule."""

__version__ = "0.1.0"
