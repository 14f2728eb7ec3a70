"""Deployment: `embodied serve` (openpi websocket, OpenVLA REST) and a client-side action queue."""
