"""The standard components, installed as flywheel.components."""
