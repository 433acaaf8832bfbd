"""The command line, `inception-retrain`: the top layer (`main.py`)."""
