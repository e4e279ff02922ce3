"""The package version (also in pyproject.toml), in a module of its own so that modules inside
the package can read it without importing the package's public face."""

__version__ = "0.1.0"
