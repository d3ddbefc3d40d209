"""Wryte Pipeline: keep a database in sync with the Markdown in a GitHub repository."""

__version__ = "0.1.0"
