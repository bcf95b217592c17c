"""The `toyrlhf` command line, installed as `toyrlhf.cli`."""
