"""Scale-out: exact scoring of partitioned event lakes on Dask."""
