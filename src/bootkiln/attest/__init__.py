"""Supply-chain records of a build: SBOMs, in-toto/SLSA provenance, DSSE signatures and their verification."""
