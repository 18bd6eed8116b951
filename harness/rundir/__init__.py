"""The run directory: the files a run leaves behind, and the one place that reads and writes each."""
