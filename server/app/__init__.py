"""Wiring: settings, server, health, reflection, signals, metrics endpoint, CLI entry."""
