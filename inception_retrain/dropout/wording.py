"""Names for people: what the dropout report's pages show instead of the program's names.

The measurements and the JSON keep Keras layer names (`hidden_2`) and snake_case keys
(`backbone_trainable_layers`): they are what a program reads. The Markdown and HTML pages
show layers as a person knows them (`Dense(1024)`, from `layer_table.names`) and keys as
words; `readable` rewrites any text for a page, `words` a key.

    readable("hidden_2/kernel of hidden_2 (noise_shape)", names)
    # 'Dense(1024) kernel of Dense(1024) (noise shape)'
"""

from __future__ import annotations

import re

SNAKE = re.compile(r"(?<![\w./-])[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+(?![\w./-])")
SPELLED = {
    "d_z": "Cohen's d (paired)",
    "log_loss": "log loss",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "after_dense2": "after the last hidden layer",
    "after_both": "after both hidden layers",
}


def words(key: str) -> str:
    """A snake_case key as words ('backbone_trainable_layers' -> 'backbone trainable
    layers'); a claim-coded timing key keeps its code ('F1_forward' -> 'F1 forward')."""
    return SPELLED.get(key, key.replace("_", " "))


def readable(text, names: dict[str, str]):
    """`text` with every layer or variable name in `names` replaced by a person's name and
    any other snake_case token by words. A name that is also an English word ('dropout',
    'predictions') is replaced only when it is the whole text (a table cell). Anything that
    is not a string is returned as is."""
    if not isinstance(text, str):
        return text
    if text in names:
        return names[text]
    identifiers = [name for name in names if "_" in name or "/" in name]
    for name in sorted(identifiers, key=len, reverse=True):  # 'hidden_2/kernel' first
        text = re.sub(rf"(?<![\w/]){re.escape(name)}(?![\w/])", names[name], text)
    return SNAKE.sub(lambda match: words(match.group(0)), text)
