"""Rollouts in vector envs (one engine for collection and evaluation), success metrics and videos."""
