"""Watching live traffic: turn the service's request log into drift reports and retrain decisions.

`reports` reads the JSONL request log, derives one numeric row per request and compares a
current window against a reference window with Evidently; `policy` turns the result into a
yes/no retrain decision with reasons. Plain library code, no orchestrator imports, so the
same functions serve a Prefect flow, a CLI and the tests.
"""
