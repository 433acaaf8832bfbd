"""The claims the dropout report judges, the verdicts it can give, and what a judgement holds.

Claims C1..C7 are the answers' claims from `shared/seed/question.md` (in English); F1..F5 are
the report's own measurement groups, stated as what one expects. A claim may have parts of
different kinds, each judged on its own as a `Finding`:

  * MECHANISM: what Dropout does, deterministic and checked bit for bit on the run's model
    (C2's algebra, C3, C5, C6, C7, F1, F2, F3, F4's determinism at inference);
  * EFFECT: what Dropout does to this head on this data, statistical: configs compared image
    by image over a cross-fit of the labelled images (`evaluation.crossfit`: C1, C4, F5,
    F4's uncertainty against the plain confidence, C2's performance half);
  * PRACTICE: history or common practice (C1's "usually", C4's paper history), not testable
    with one model and one data set; what of it can be measured is said.

Verdicts:
  * supported / refuted: the rule's measurement came out for / against the claim;
  * inconclusive: the measurement could not decide (an interval too wide), with the smallest
    difference it could have detected and about how many images would decide it;
  * not testable here: nothing in this run can decide it, with the reason;
  * clarified: a definitional point: the claim is right in what it says, but imprecise in a
    way that holds for any rate in (0, 1), so it is a clarification, not a finding that could
    have gone the other way.
Every finding states the rule that decided it and what result would have flipped it.

    entries = judge(measurements, margin=0.05)      # rules.py: [Entry(id="C1", ...), ...]
    entries[0].findings[0].verdict                   # e.g. "inconclusive"
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED = "supported"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
CLARIFIED = "clarified"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_TESTABLE, CLARIFIED)
CONCLUSIVE = (SUPPORTED, REFUTED, CLARIFIED)

MECHANISM, EFFECT, PRACTICE = "mechanism", "effect", "practice"
KINDS = {
    MECHANISM: "Mechanism: deterministic, checked bit for bit on this model",
    EFFECT: "Effect on this data: statistical, configs compared image by image, cross-fitted",
    PRACTICE: "History and practice: not testable with one model and one data set",
}

CLAIMS = {
    "C1": "Dropout is usually used only in the last layers of a network, not in every layer.",
    "C2": "There is debate whether dropout goes before or after the activation; rule of thumb: "
    "after the activation for every activation function except ReLU.",
    "C3": "You can add dropout after each hidden layer; it affects only the layer right before "
    "it (here Dense(1024)).",
    "C4": "The original dropout paper (Hinton et al., 2012) used p=0.5 on every fully connected "
    "layer before the output and none on convolutional layers; this became the most common "
    "setup.",
    "C5": "The dropout layer affects the output of the previous layer: 20% of the outputs of "
    "Dense(1024) are randomly dropped before they reach the final Dense layer.",
    "C6": "Only the neurons of the preceding layer are switched off, but all layers are affected "
    "through backpropagation: later layers get changed inputs, earlier layers changed "
    "gradients; with Dropout(rate=1) zero gradient flows.",
    "C7": "Whole neurons are dropped only when the Dense input is 2D (batch_size, features); "
    "Dropout applies an independent uniform random mask to every element. To drop whole "
    "neurons of a 3D input use noise_shape=(batch_size, 1, features); to drop the same "
    "neurons for every sample use noise_shape=(1, 1, features) (or (1, features) for 2D).",
    "F1": "Forward: with training=True, Dropout zeroes only units of its own input (the outputs "
    "of Dense(1024)); every layer before it (all frozen backbone layers, Dense(512), "
    "Dense(1024)) gives exactly the output it gives with training=False, while Dropout and "
    "every layer after it differ. A new mask is drawn for every step and every sample (not "
    "once per epoch), and kept values are scaled by exactly 1/(1-rate).",
    "F2": "Backward: with a fixed mask, the gradient of Dense(1024)'s kernel columns and bias "
    "for the dropped units is exactly zero in that step; Dense(512)'s gradient changes; "
    "frozen layers get no gradient; with rate 1 every layer before Dropout gets zero gradient.",
    "F3": "Frozen means frozen: training leaves every backbone weight and BatchNorm moving "
    "statistic bitwise identical, and the cache-based training never touches the backbone.",
    "F4": "At inference (training=False) Dropout is the identity and predictions are "
    "deterministic; with dropout kept on (MC dropout) predictions vary, and misclassified "
    "images carry higher uncertainty.",
    "F5": "Dropout reduces overfitting of this head on this data: a smaller train-test "
    "accuracy gap than without dropout, without lower test accuracy.",
}
ORDER = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "F1", "F2", "F3", "F4", "F5")

Scalar = float | int | str | bool | None


# What a finding needs of config B against config A (`Comparison.claim`).
AT_LEAST_AS_GOOD, BETTER_CLAIM, SAME = "at least as good", "better", "no different"


@dataclass
class Comparison:
    """One paired comparison of two configs (B against A; a positive difference favours B)
    by `evaluation.crossfit`, and the engine's verdict on it."""

    name: str
    metric: str  # accuracy, brier, log_loss, gap or auroc
    unit: str  # what the difference measures, e.g. "Brier A - B"
    a: str  # config labels
    b: str
    claim: str  # AT_LEAST_AS_GOOD, BETTER_CLAIM or SAME: what the finding needs of B
    verdict: str  # crossfit: better, equivalent, worse, inconclusive or not testable
    direction: str  # the side the 95% interval is sure of ("B better", "B worse", "none")
    difference: float | None
    low: float | None  # 95% interval
    high: float | None
    low90: float | None  # 90% interval (equivalence)
    high90: float | None
    margin: float
    p_value: float | None  # two-sided, of "no difference"
    design: str  # "2x5 cross-fit" or "one split"
    images: int
    folds: int
    repeats: int
    min_detectable: float | None = None
    images_needed: int | None = None
    repeats_needed: int | None = None
    note: str = ""
    degenerate_pairs: int = 0  # (repeat, fold) pairs with a degenerate training, kept in
    lost_pairs: int = 0  # pairs left out of the comparison
    deciding: bool = True  # False: shown for context, not part of the verdict
    per_image: list[float] = field(default_factory=list)  # B's advantage per image
    per_fold: list[list[float]] = field(default_factory=list)  # per (repeat, fold)


@dataclass
class Finding:
    """One part of a claim, judged by one rule."""

    claim: str  # "C1"
    kind: str  # MECHANISM, EFFECT or PRACTICE
    question: str  # what this part asks, in one line
    verdict: str
    rule: str  # the rule that decided it
    flip: str  # what result would have flipped it
    numbers: dict[str, Scalar] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    reason: str = ""  # for inconclusive / not testable: why

    def __post_init__(self):
        assert self.verdict in VERDICTS, self.verdict
        assert self.kind in KINDS, self.kind


@dataclass
class Entry:
    """A claim and its findings, in report order."""

    id: str
    claim: str
    findings: list[Finding]

    @property
    def verdicts(self) -> list[str]:
        return [finding.verdict for finding in self.findings]
