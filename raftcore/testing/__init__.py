"""Helpers for testing code built on raftcore (and raftcore itself)."""
