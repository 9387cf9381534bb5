"""Build stages. Each stage module declares its cache key inputs and runs exactly one script."""
