"""The build core: the pipeline, its stage cache, the builder image, the Docker engine and the one command runner."""
