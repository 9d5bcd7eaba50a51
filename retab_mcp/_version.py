"""The package version, in a module that imports nothing, so any layer can read it without
importing the package's top (hatch reads it from here too)."""

__version__ = "0.1.0"
