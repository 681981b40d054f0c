"""Workflow definitions: parsing, validation, durations, expressions, templating."""
