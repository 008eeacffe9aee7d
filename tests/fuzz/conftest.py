"""The fuzz harnesses are scripts (run by ``run.py``), not test modules: pytest skips this folder."""

collect_ignore_glob = ["*.py"]
