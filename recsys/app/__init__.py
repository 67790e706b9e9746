"""The application: what people run (the CLI, `up`, the demo and the loop drivers).

It is the one part of recsys that names flow modules and deployments, so it sits above
`flows/`, which sits above the rest of recsys (the library). import-linter checks both
arrows (pyproject.toml): the library never imports the flows or this package.
"""
