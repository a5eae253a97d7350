"""Worked examples built on tmepde's public API (one package per example)."""
