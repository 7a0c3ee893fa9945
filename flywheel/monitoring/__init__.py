"""Drift monitoring, alerts, retraining triggers and rollback."""
