"""Byte formats bootkiln writes and reads itself: cpio, ISO 9660, GPT, FAT, ELF."""
