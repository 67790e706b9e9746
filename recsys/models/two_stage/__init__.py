"""The two-stage recommender: cheap retrievers propose candidates, a learned ranker orders them.

`snapshot` holds everything known before a cut-off (the one place interactions enter),
`candidates` unions the retrievers' top N, `features` describes each (user, candidate) pair,
`ranker` is the Keras model that orders them, `model` wires the stages into a Recommender, and
`importance` measures which feature groups the fitted ranker leans on, `reuse` lets a search fit
the retrievers once per window, and `served` runs both stages per request in the service
(numpy only).
"""

from recsys.models.two_stage.model import TwoStageModel

__all__ = ["TwoStageModel"]
