"""Watching live traffic: turn the service's request log into drift reports and retrain decisions.

`request_log` reads the service's logs (validated by their schemas in recsys.schemas),
`features` derives one numeric row per request, `drift` compares a current window against a
reference window with Evidently, `dashboard` keeps those runs in the Evidently workspace, and
`policy` turns the result into a yes/no retrain decision with reasons; `canary` judges a
challenger on live traffic (the canary arm against the champion's, the shadow's lists beside
the champion's) and decides to promote, hold or roll it back. Plain library code, no
orchestrator imports, so the same functions serve a Prefect flow, a CLI and the tests.
Replaying traffic and planting shifts is simulation, not monitoring: recsys.simulation.
"""
