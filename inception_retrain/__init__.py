"""inception-retrain: which layers does a Dropout layer actually affect? Measured, on a schedule.

This package is the core library (plain Python and Keras: no Prefect, no command line). The
same namespace holds the layers above it, installed from their own folders:
`inception_retrain.tasks` (tasks/: Prefect tasks, one stage each), `inception_retrain.flows`
(flows/: the flows that wire them) and `inception_retrain.cli` (cli/: the command line).
docs/architecture.md draws the layers and follows one image through them.
"""

__version__ = "0.1.0"
