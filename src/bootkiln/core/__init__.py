"""The build machinery under the stages: stage cache, builder image, Docker engine, command runner,
archive state, overlays and the build manifest."""
