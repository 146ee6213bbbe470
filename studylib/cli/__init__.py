"""The command line (``python -m studylib``): the runner (``list``, ``run``, ``report``), the
sweeps on Dask, REPORT.md and the smoke-run regression check."""
