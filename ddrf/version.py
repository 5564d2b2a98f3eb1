"""The package version, in a room of its own so that code inside the package need not import the package face."""
__version__ = "0.1.0"
