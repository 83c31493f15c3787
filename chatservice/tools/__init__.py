"""Command-line tools installed with the package."""
