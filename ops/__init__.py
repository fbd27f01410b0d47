"""Operators' commands: `python -m ops --help`."""
