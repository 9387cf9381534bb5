"""Scale-out: builds on a Dask cluster, and many builds at once (build matrix)."""
