"""The base layer: paths, atomic I/O and cache keys, runtime (devices, seeds, progress,
``StudyContext``), the one plotting theme, number formatting and the results.json contract."""
