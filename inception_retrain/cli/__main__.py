"""`python -m inception_retrain.cli`: the same as the `inception-retrain` command."""

from inception_retrain.cli.main import main

main()
