"""Security primitives: pure functions and small classes, no database access."""
