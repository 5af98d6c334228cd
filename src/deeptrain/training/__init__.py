"""Internals of the train loop: configuration, state, stages, validation, progress."""
