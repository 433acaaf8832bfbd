"""The one configuration model shared by the CLI and the Prefect deployment parameters.

Every option of `inception-retrain run` is a field here, and `flows.retrain.retrain` takes a
`RetrainConfig` as its only parameter, so Prefect validates deployment parameters with the
same rules as the command line (a bad value is rejected before a run starts).

    >>> cfg = RetrainConfig(data="tfds:cats_vs_dogs", weights="imagenet", workdir="/data/work")
    >>> cfg.head.dropout_rate
    0.2

The config is the composition root: it imports the specs of the wings and is imported by none
of them. Flows split it into what each stage takes (`backbone`, `extraction`, `training`,
`promotion`, `sweep`, ...), so a stage's signature says what it depends on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from inception_retrain.data.contract_spec import DataCheckSpec, DataContract
from inception_retrain.data.demo_data import DEMO_FOLDER, DEMO_SOURCE
from inception_retrain.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE
from inception_retrain.data.ingest_spec import IngestSpec
from inception_retrain.evaluation.slice_spec import (
    SliceSpec,
    check_slices_header,
    increasing_edges,
)
from inception_retrain.features.augmentation import MAX_VIEWS, AugmentPolicy
from inception_retrain.features.backbone_spec import BackboneSpec, prefix_layer, unfrozen_blocks
from inception_retrain.features.extraction_spec import ExtractionSpec
from inception_retrain.features.weights import WeightsSource, parse_weights
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.cluster_spec import Cluster
from inception_retrain.plumbing.errors import ConfigError
from inception_retrain.plumbing.shard_policy import ShardPolicy
from inception_retrain.registry.promotion_policy import PromotionMetric, PromotionPolicy
from inception_retrain.training.fine_tune_spec import FineTuneOptimizer, FineTuneSpec
from inception_retrain.training.head_spec import PLACEMENTS, DropoutPlacement, HeadSpec
from inception_retrain.training.training_spec import TrainingSpec

if TYPE_CHECKING:
    from inception_retrain.dropout.evidence_spec import EvidenceSpec
    from inception_retrain.dropout.sweep import SweepSpec

_SHARDS = ShardPolicy()  # the defaults, defined once there


# When the nightly-retrain deployment runs, unless `serve --cron/--timezone` or a prefect.yaml
# generated with them says otherwise (flows/deployments.py).
NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TIMEZONE = "UTC"
SWEEP_EPOCHS = 10  # the sweep's epoch budget: bench/sweep.py and docs/evidence.md say why
# Settings of older versions that runs recorded: dropped when a run's config is read back.
RETIRED_FIELDS = {
    "sweep_seeds": "the sweep now cross-fits (--sweep-folds, --sweep-repeats)",
    "sweep_patience": "sweep trainings run a fixed budget (--sweep-epochs)",
}


class RetrainConfig(BaseModel):
    """What a retrain run does. Defaults reproduce the seed's setup on the built-in demo data."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- data and backbone -------------------------------------------------------------
    data: str = Field(
        DEMO_SOURCE,
        description="'demo' (generated under WORKDIR/demo-data), a folder of class "
        "sub-folders (a path or s3://bucket/prefix), or 'tfds:NAME[?data_dir=DIR]'.",
    )
    weights: str = Field(
        "random:0",
        description="'imagenet', a weights file (.h5/.weights.h5; a path or s3://bucket/key), "
        "or 'random[:SEED]'.",
    )
    workdir: Path = Field(
        Path("workdir"), validate_default=True, description="Holds cache/, models/ and runs/."
    )
    image_size: int = Field(150, ge=75, le=1024, description="Square input size (pixels).")
    layer: str = Field("mixed7", description="InceptionV3 layer the frozen backbone ends at.")
    split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train/validation/test fractions without split folders."
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="Images with more pixels are skipped (decompression bombs).",
    )
    min_image_size: int = Field(
        DEFAULT_MIN_SIZE,
        ge=1,
        le=4096,
        description="Images whose short side is smaller are skipped as too-small (pixels).",
    )
    extract_batch_size: int = Field(32, ge=1, le=1024, description="Images per backbone batch.")
    feature_dtype: Literal["float16", "float32"] = Field(
        "float16", description="Storage type of cached features (float32 is exact, 2x size)."
    )
    feature_cache: str | None = Field(
        None,
        description="Root of the feature cache: a folder, file:// or s3://bucket/prefix "
        "(credentials from the client's environment).",
    )

    # --- where the work runs -----------------------------------------------------------
    cluster: Cluster | None = Field(
        None,
        description="Where extraction, the sweep and prediction run: this process, "
        "'local:N' (a Dask cluster of N worker processes started for the run) or "
        "'tcp://HOST:PORT' (a running Dask scheduler).",
    )
    shard_rows: int = Field(
        256, ge=1, le=100_000, description="Manifest rows per extraction shard on a cluster."
    )
    shard_timeout_s: float = Field(
        _SHARDS.timeout_s,
        gt=0,
        description="Seconds a shard on a cluster may run once a worker started it; a late "
        "one is cancelled, its worker replaced and the shard run again.",
    )
    shard_start_timeout_s: float = Field(
        _SHARDS.start_timeout_s,
        gt=0,
        description="Seconds a shard on a cluster may wait for a worker to start it.",
    )
    shard_attempts: int = Field(
        _SHARDS.attempts,
        ge=1,
        le=10,
        description="Runs of a shard on a cluster before a late one fails the run.",
    )
    shard_retries: int = Field(
        _SHARDS.retries,
        ge=0,
        le=10,
        description="Retries of a shard on a cluster that raised an unexpected error, "
        "within its time-out.",
    )

    # --- head and training -------------------------------------------------------------
    head: HeadSpec = Field(default_factory=HeadSpec, description="The trainable head.")
    epochs: int = Field(10, ge=1, le=1000, description="Maximum training epochs.")
    batch_size: int = Field(32, ge=1, le=4096, description="Training batch size.")
    patience: int = Field(3, ge=0, description="Early-stopping patience in epochs (0: off).")
    seed: int = Field(0, ge=0, description="Seed for head init, data order and dropout masks.")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Training device; auto uses a GPU when TensorFlow sees one."
    )
    mixed_precision: bool = Field(False, description="mixed_float16 on GPU.")
    memory_budget_mb: int = Field(
        2048, ge=1, description="Hold training features in memory below this, else stream."
    )
    standardize_features: bool = Field(
        True,
        description="Train on cached features standardised per feature with the training "
        "images' statistics (folded into Dense(512) when saved: the saved head is the "
        "seed's, on raw features). Keeps RMSprop's first steps from killing Dense(512).",
    )

    # --- fine-tuning (inception_retrain.training.fine_tune) ------------------------------
    fine_tune: str | None = Field(
        None,
        description="After the head trains, unfreeze this InceptionV3 block (mixed1 .. "
        "--layer) and every block above it up to --layer, and train them with the head on "
        "features cached at the block below (mixed7: mixed6 features). The model chosen on "
        "validation (head only or fine-tuned) goes on.",
    )
    fine_tune_optimizer: FineTuneOptimizer = Field(
        "sgd", description="Fine-tuning optimiser: SGD with momentum, or Adam."
    )
    fine_tune_learning_rate: float = Field(
        1e-5, gt=0.0, le=1.0, description="Fine-tuning learning rate (keep it low)."
    )
    fine_tune_momentum: float = Field(
        0.9, ge=0.0, lt=1.0, description="SGD momentum of fine-tuning (Adam ignores it)."
    )
    fine_tune_epochs: int = Field(10, ge=1, le=1000, description="Maximum fine-tuning epochs.")
    fine_tune_patience: int = Field(
        3, ge=0, description="Fine-tuning early-stopping patience on validation loss (0: off)."
    )
    fine_tune_accuracy_margin: float = Field(
        0.02,
        gt=0.0,
        lt=1.0,
        description="Test accuracy margin of 'equivalent' in the paired comparison of the "
        "fine-tuned model with the head alone, fixed before the run.",
    )
    fine_tune_log_loss_margin: float = Field(
        0.02,
        gt=0.0,
        description="Test log-loss margin (nats per image) of 'equivalent' in the same "
        "comparison, fixed before the run.",
    )

    # --- augmented views (inception_retrain.features.augmentation) ------------------------------
    augment_views: int = Field(
        0,
        ge=0,
        le=MAX_VIEWS,
        description="Augmented views per train image, computed once through the backbone and "
        "cached (K + 1 times the train split's cache); each epoch trains on one of an "
        "image's K + 1 rows. 0: no augmentation.",
    )
    augment: AugmentPolicy = Field(
        default_factory=AugmentPolicy, description="The random distortions of a view."
    )
    augment_seeds: int = Field(
        5,
        ge=2,
        le=20,
        description="Seeds of the evaluation's paired comparison of training with and "
        "without the views (only when --augment-views > 0).",
    )

    # --- promotion ---------------------------------------------------------------------
    promotion_metric: PromotionMetric = Field(
        "roc_auc", description="Test-split score that decides promotion (higher is better)."
    )
    promotion_tolerance: float = Field(
        0.0, ge=0.0, le=1.0, description="Promote if score >= champion's score minus this."
    )
    promotion_max_slice_drop: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="Refuse promotion when a slice of the test split (class, source folder, "
        "format, size bucket, user slice) loses more accuracy than this against the champion, "
        "paired on the same images and beyond its interval. 1: no slice gate.",
    )
    promotion_slice_min_images: int = Field(
        10, ge=2, description="Slices with fewer paired test images are not gated."
    )
    publish_models: Literal["promoted", "all"] = Field(
        "promoted",
        description="Which models become versions under models/: only promoted ones (a "
        "rejected model keeps its head and reports in its run folder), or all.",
    )

    # --- data checks (data.contract, evaluation.drift, evaluation.slices) --------------
    data_checks: bool = Field(
        True,
        description="Check the data before training: the data contract against the "
        "champion's data (or the previous run's), and drift of the new images on the cached "
        "features; data_report.html in the run folder.",
    )
    data_checks_alpha: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="Family-wise false-alarm rate of the statistical data checks (Holm over "
        "all of them).",
    )
    data_checks_permutations: int = Field(
        999, ge=99, le=99_999, description="Permutations of each statistical data check."
    )
    data_checks_min_new: int = Field(
        10,
        ge=2,
        description="Fewest new images a statistical check tests, overall and per class; "
        "below it the check says 'too few to test'.",
    )
    data_checks_min_reference: int = Field(
        20, ge=2, description="Fewest reference images a statistical check tests."
    )
    data_checks_max_images: int = Field(
        1000,
        ge=20,
        description="Larger new or reference batches are subsampled (with --seed) for the "
        "statistical checks.",
    )
    contract: DataContract = Field(
        default_factory=DataContract,
        description="The data contract: a severity (block, warn, off) per check.",
    )
    slices_csv: Path | None = Field(
        None,
        description="A CSV file with columns content_id,slice: user slices of the sliced "
        "evaluation and the promotion gate.",
    )
    slice_size_edges: list[int] = Field(
        [128, 256, 512],
        min_length=1,
        description="Short-side edges (pixels) of the size-bucket slices.",
    )

    # --- dropout-impact report ---------------------------------------------------------
    sweep_grid: Literal["claims", "full"] = Field(
        "claims",
        description="The report's sweep: the claims' cells (no dropout; 0.2 and 0.5 after "
        "Dense(1024); 0.5 after both) or the full --sweep-rates x --sweep-placements grid.",
    )
    sweep_rates: list[float] = Field(
        [0.0, 0.2, 0.5, 0.8], min_length=1, description="Dropout rates of the full grid."
    )
    sweep_placements: list[DropoutPlacement] = Field(
        list(PLACEMENTS), min_length=1, description="Placements of the full grid."
    )
    sweep_folds: int = Field(
        5,
        ge=2,
        le=20,
        description="Folds of the sweep's cross-fit over the train and validation images: "
        "every config is trained on all folds but one and predicts the one left out.",
    )
    sweep_repeats: int = Field(
        2, ge=1, le=20, description="Times the sweep splits those images into folds anew."
    )
    sweep_epochs: int = Field(
        SWEEP_EPOCHS,
        ge=1,
        le=200,
        description="Epochs of every sweep training: one fixed budget for every config, "
        "no early stopping.",
    )
    sweep_max_images: int = Field(
        2000,
        ge=20,
        description="Above this many train and validation images the sweep uses a "
        "stratified sample of this size, the same on every rerun (drawn from content ids).",
    )
    sweep_metric: Literal["brier", "accuracy", "log_loss"] = Field(
        "brier",
        description="The per-image score that decides the sweep's effect claims (C1, C4, "
        "F5, C2), fixed before the run; the others are shown beside it.",
    )
    sweep_brier_margin: float = Field(
        0.034,
        gt=0.0,
        lt=1.0,
        description="Brier margin: a smaller difference counts as equivalent (0.034 goes with "
        "an accuracy difference of 0.05 for this head).",
    )
    sweep_log_loss_margin: float = Field(
        0.10, gt=0.0, lt=10.0, description="Log-loss margin in nats (as --sweep-brier-margin)."
    )
    sweep_auroc_margin: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="F4: the AUROC margin of MC dropout's uncertainty over the plain "
        "confidence for spotting errors.",
    )
    equivalence_margin: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="Accuracy margin of the dropout report's effect claims, fixed before the "
        "run: a smaller difference counts as equivalent.",
    )
    mc_passes: int = Field(30, ge=2, le=1000, description="Stochastic passes for MC dropout.")

    @field_validator("feature_cache")
    @classmethod
    def _feature_cache(cls, value: str | None) -> str | None:
        return str(storage.location(value)) if value else None

    @field_validator("fine_tune")
    @classmethod
    def _fine_tune_block(cls, block: str | None, info: ValidationInfo) -> str | None:
        if block is None:
            return None
        prefix_layer(block)  # a known block above mixed0
        if "layer" in info.data:
            unfrozen_blocks(block, info.data["layer"])
        return block

    @field_validator("weights")
    @classmethod
    def _weights_source(cls, value: str) -> str:
        source = parse_weights(value)
        if source.kind != "file" or source.uri:
            return value
        if not source.path.is_file():
            raise ValueError(f"weights file not found: {value}")
        return str(source.path.absolute())  # recorded runs stay re-runnable

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, value: Path) -> Path:
        # Resolved once, where the run starts, so every recorded path (run folders, the
        # champion pointer) stays valid whatever the reader's working directory.
        return value.expanduser().absolute()

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-6 or value[0] == 0:
            raise ValueError("split fractions must be >= 0, sum to 1, and give train a share")
        return value

    @field_validator("slices_csv")
    @classmethod
    def _slices_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.expanduser().is_file():
            raise ValueError(f"slices file not found: {value}")
        check_slices_header(value.expanduser())
        return value.expanduser().absolute()  # recorded runs stay re-runnable

    @field_validator("slice_size_edges")
    @classmethod
    def _size_edges(cls, value: list[int]) -> list[int]:
        return increasing_edges(value)

    @field_validator("sweep_rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if any(not 0.0 <= r < 1.0 for r in value):
            raise ValueError("sweep rates must be in [0, 1)")
        return value

    @field_validator("data")
    @classmethod
    def _data_source(cls, data: str) -> str:
        if data == DEMO_SOURCE or data.startswith("tfds:"):
            return data
        if storage.looks_like_uri(data) and storage.is_remote(data):
            return str(storage.location(data))  # reachable? checked when a run starts
        if not Path(data).is_dir():
            raise ValueError(f"data folder not found: {data} (or use 'demo' or 'tfds:NAME')")
        return str(Path(data).expanduser().absolute())  # recorded runs stay re-runnable

    @classmethod
    def from_recorded(cls, settings: dict, overrides: dict | None = None) -> RetrainConfig:
        """A run's config from its recorded settings (config.json), with `overrides`; a value
        that no longer validates is a one-line ConfigError naming the field."""
        values = {k: v for k, v in settings.items() if k not in RETIRED_FIELDS}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{where}: {first['msg']}") from None

    @property
    def weights_source(self) -> WeightsSource:
        return parse_weights(self.weights)

    @property
    def demo_dir(self) -> Path:
        return self.workdir / DEMO_FOLDER

    # --- what each stage takes ---------------------------------------------------------

    @property
    def ingest(self) -> IngestSpec:
        return IngestSpec(
            source=self.data,
            workdir=self.workdir,
            split_fractions=self.split_fractions,
            max_pixels=self.max_pixels,
            min_image_size=self.min_image_size,
        )

    @property
    def backbone(self) -> BackboneSpec:
        return BackboneSpec(weights=self.weights, layer=self.layer, image_size=self.image_size)

    @property
    def cache_root(self) -> Path | str:
        """The folder (or URI prefix) that holds one feature cache per backbone."""
        return self.feature_cache or self.workdir / "cache"

    @property
    def extraction(self) -> ExtractionSpec:
        return ExtractionSpec(
            backbone=self.backbone,
            cache_root=self.cache_root,
            feature_dtype=self.feature_dtype,
            batch_size=self.extract_batch_size,
            shard_rows=self.shard_rows,
            views=self.augment_views,
            augment=self.augment,
        )

    @property
    def shard_policy(self) -> ShardPolicy:
        return ShardPolicy(
            timeout_s=self.shard_timeout_s,
            start_timeout_s=self.shard_start_timeout_s,
            attempts=self.shard_attempts,
            retries=self.shard_retries,
        )

    @property
    def training(self) -> TrainingSpec:
        return TrainingSpec(
            head=self.head,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            device=self.device,
            mixed_precision=self.mixed_precision,
            memory_budget_mb=self.memory_budget_mb,
            standardize=self.standardize_features,
        )

    @property
    def fine_tuning(self) -> FineTuneSpec | None:
        """How fine-tuning trains (None: off)."""
        if self.fine_tune is None:
            return None
        return FineTuneSpec(
            block=self.fine_tune,
            layer=self.layer,
            optimizer=self.fine_tune_optimizer,
            learning_rate=self.fine_tune_learning_rate,
            momentum=self.fine_tune_momentum,
            epochs=self.fine_tune_epochs,
            patience=self.fine_tune_patience,
        )

    @property
    def prefix_extraction(self) -> ExtractionSpec | None:
        """The extraction of the prefix fine-tuning trains on: the run's extraction, cut at
        the block below the unfrozen one (None without fine-tuning)."""
        if self.fine_tune is None:
            return None
        backbone = self.backbone.model_copy(update={"layer": prefix_layer(self.fine_tune)})
        return self.extraction.model_copy(update={"backbone": backbone})

    @property
    def promotion(self) -> PromotionPolicy:
        return PromotionPolicy(
            metric=self.promotion_metric,
            tolerance=self.promotion_tolerance,
            models_dir=self.workdir / "models",
            max_slice_drop=self.promotion_max_slice_drop,
            slice_min_images=self.promotion_slice_min_images,
        )

    @property
    def data_check_spec(self) -> DataCheckSpec:
        return DataCheckSpec(
            contract=self.contract,
            alpha=self.data_checks_alpha,
            permutations=self.data_checks_permutations,
            min_new=self.data_checks_min_new,
            min_reference=self.data_checks_min_reference,
            max_images=self.data_checks_max_images,
            seed=self.seed,
        )

    @property
    def slicing(self) -> SliceSpec:
        return SliceSpec(csv=self.slices_csv, size_edges=tuple(self.slice_size_edges))

    def sweep(self, cache_dir, manifest_path, n_classes: int, feature_shape) -> SweepSpec:
        """The dropout sweep on a run's cached features (`dropout.sweep`)."""
        from inception_retrain.dropout.sweep import SweepSpec  # scipy: not at CLI start-up

        return SweepSpec(
            cache_dir=cache_dir,
            manifest_path=manifest_path,
            n_classes=n_classes,
            feature_shape=tuple(feature_shape),
            head=self.head,
            batch_size=self.batch_size,
            epochs=self.sweep_epochs,
            folds=self.sweep_folds,
            repeats=self.sweep_repeats,
            seed=self.seed,
            max_images=self.sweep_max_images,
            standardize=self.standardize_features,
            mc_passes=self.mc_passes,
            grid=self.sweep_grid,
            rates=list(self.sweep_rates),
            placements=list(self.sweep_placements),
            sweeps_dir=self.workdir / "sweeps",
        )

    @property
    def evidence(self) -> EvidenceSpec:
        """How the dropout report decides its effect claims (`dropout.evidence_spec`)."""
        from inception_retrain.dropout.evidence_spec import EvidenceSpec

        return EvidenceSpec(
            metric=self.sweep_metric,
            accuracy_margin=self.equivalence_margin,
            brier_margin=self.sweep_brier_margin,
            log_loss_margin=self.sweep_log_loss_margin,
            auroc_margin=self.sweep_auroc_margin,
        )
