"""Side-by-side benchmarks of studylib against the libraries a researcher would otherwise use."""
