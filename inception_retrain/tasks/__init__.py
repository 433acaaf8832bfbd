"""Prefect tasks: one pipeline stage per module, each a thin wrapper around the core library.

A task takes the typed artifacts of the stages before it (`Manifest`, `FeatureCache`,
`TrainedHead`, ...), calls the core function that does the work, publishes what the Prefect UI
should show, and returns its own artifact. Tasks never import each other or a flow;
`runtime` holds what they share.
"""

# Connects the core's logs and progress bars to Prefect for any process that uses a task.
from inception_retrain.tasks import runtime as _runtime  # noqa: E402,F401
