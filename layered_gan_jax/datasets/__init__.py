"""Datasets shipped with the project."""
