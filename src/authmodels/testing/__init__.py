"""pytest plugin and test helpers for applications built on authmodels."""
