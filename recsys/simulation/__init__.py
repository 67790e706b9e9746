"""Simulated life for the loop: real data replayed as live traffic, shifts planted in it, and the timeline.

Simulation is not monitoring: the monitor only reads the logs the service writes, whoever
sent the requests. `traffic` replays a later period of real data as HTTP requests (purchases
as feedback) and serves the training period through the serving logic as the monitor's
reference; `shifts` plants a shift in the data from a date on; `timeline` holds the loop's
windows, the figures the loop is judged by and their plot. It sits above serving and
monitoring (import-linter contracts in pyproject.toml); neither imports it.
"""
