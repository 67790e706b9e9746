"""Serving: plain recommendation logic (logic.py) and the thin BentoML service (service.py)."""
