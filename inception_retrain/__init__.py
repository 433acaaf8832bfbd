"""inception-retrain: which layers does a Dropout layer actually affect? Measured, on a schedule.

Four layers, each importing only those below it:

    cli/        the command line: options, one-line errors
    flows/      Prefect flows: they only wire stages
    tasks/      Prefect tasks: one stage each, a thin wrapper around one core function
    the core    plain Python and Keras, no Prefect, no command line: `config.py` and the wings

The core's wings, in order; a wing may import only the wings before it:

    plumbing    errors, atomic files, locks, schemas, storage (local or s3://), --cluster
    data        input files, the demo, tfds, ingest, the manifest
    features    the frozen backbone, preprocessing, views, the feature cache, extraction
    training    the head, its training data, the training loop and stage
    evaluation  metrics, statistics, scoring, the evaluation report, augmentation's effect
    dropout     the dropout report's measurements, sweep, verdicts and report
    registry    model versions, the champion, promotion, export, prediction
    runs        preflight, run folders, one run per workdir, finished runs read back

`config.py` (`RetrainConfig`, the CLI options and deployment parameters) sits above the wings
and is imported by none of them: flows split it into the small specs each stage takes.
docs/architecture.md draws the layers and follows one image through them.
"""

__version__ = "0.1.0"
