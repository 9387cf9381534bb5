"""Profiles: the one file a user edits, its schema and how it is found, read and checked."""
