"""Techniques of the ML lifecycle as estimators and functions (see base.py)."""
