"""The package version, in a leaf module so that anything below the package root can read it."""

__version__ = "0.1.0"
