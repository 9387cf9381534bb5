"""Harnesses only the tests use: an NFS server, a disk reader (GPT, LVM2, ext4), and an install driver."""
