"""Layers written once and shared by the models."""
