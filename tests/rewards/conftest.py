"""The lift_zone stores (zone_rollouts, zone_demos) live in tests/conftest.py: alignment tests share them."""
