"""Serving models from the registry over a TF-Serving-compatible REST API."""
