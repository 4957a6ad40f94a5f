"""Writes: every rule that changes the database lives in these modules."""
