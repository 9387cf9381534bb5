"""bootkiln: reproducible bootable Debian images, built in Docker builder containers."""

__version__ = "0.1.0"
