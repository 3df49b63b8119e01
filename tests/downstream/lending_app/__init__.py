"""A small downstream application built on authmodels, as a service team would write it.

It has a table of its own (seed 001's ``token_lending``: users lend each other tokens, and two
people editing one lending at once must not lose an update), a model on its own declarative base
that uses authmodels' ``Versioned`` mixin, and an Alembic environment whose one revision depends
on authmodels' chain.
"""
