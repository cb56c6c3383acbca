"""The line service that composes everything (and its start-up heap policy)."""
