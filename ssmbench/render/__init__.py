"""Rendering a run's points: terminal tables, the Markdown report with its plots, the fleet page's HTML."""
