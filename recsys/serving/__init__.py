"""Serving: recommendation logic (logic.py), the ANN index (index.py), the HTTP extras
(http.py: GET /model, admin reload, request guard) and the thin BentoML service (service.py)."""
