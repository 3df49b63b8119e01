"""authservice: a small FastAPI service on authmodels' async API (see ../README.md)."""
