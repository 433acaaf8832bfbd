"""The batch-prediction flow: score image files or folders with a registered model.

Deployable on its own (it needs only a model under WORKDIR/models, not the retrain flow):

    python -m inception_retrain.flows.predict   # serves "batch-predict" (no work pool)
    batch_predict(paths=["/data/inbox"], output="/data/out/predictions.parquet")

`model` is "champion" (resolved when the run starts, so a newer champion is picked up) or a
version name. Bad image files become error rows in the output, never a failed run; a missing
model or an empty input fails the run with a one-line message.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from inception_retrain.registry import resolve_model
from inception_retrain.tasks.predict import predict_files_task


@flow(name="batch-predict", log_prints=True)
def batch_predict(
    paths: list[str],
    output: str = "predictions.csv",
    model: str = "champion",
    workdir: str = "workdir",
) -> dict:
    """Predict every image under `paths` with `model`; write `output` (.csv or .parquet)."""
    logger = get_run_logger()
    model_dir = resolve_model(workdir, model)
    logger.info("model %s: %s", model, model_dir)
    # Called, not submitted: TensorFlow runs on the flow's main thread.
    summary = predict_files_task(model_dir, [Path(p) for p in paths], Path(output))
    logger.info(
        "%d images, %d failed -> %s", summary["n_files"], summary["n_failed"], summary["output"]
    )
    return summary


if __name__ == "__main__":
    batch_predict.serve(name="batch-predict")
