"""Verification: reproducibility checks, structural artifact diffs, QEMU boot tests and testinfra image tests."""
