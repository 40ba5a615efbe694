"""Broken and hostile inputs for radiolab's tests.

`corpus` holds one generator per kind of bad input (volumes, DICOM series, tables and
configuration files); ``tests/test_bad_inputs.py`` runs each through the command that
would meet it in practice. See ``docs/bad_inputs.md`` for the list and the decisions.
"""
