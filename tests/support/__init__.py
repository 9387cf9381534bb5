"""Harnesses only the tests use: an NFS server, a disk reader and an install driver."""
