"""Streaming story clustering."""
