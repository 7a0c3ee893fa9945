"""Active learning, simulated: label -> train -> query rounds with an oracle, on digits.

    flywheel run pipelines/active_learning.py                       # entropy sampling
    flywheel run pipelines/active_learning.py -p strategy=random    # the baseline

A pipeline graph is static, so the loop is unrolled when the pipeline is
built: a Python loop over ``ROUNDS`` (a build-time constant, as in KFP) adds
one ``query`` and one ``annotate`` node per round. ``learning_curve`` then
refits round by round and writes the accuracy-vs-labels curve (curve.png).
``build(rounds)`` makes the same pipeline with another number of rounds.
"""

from flywheel import pipeline
from flywheel.components.data.bundled import digits_examples
from flywheel.components.query import annotate, learning_curve, query, split_pool

ROUNDS = 10


def build(rounds: int = ROUNDS):
    """The active-learning pipeline with ``rounds`` query/annotate rounds unrolled."""

    @pipeline(name="active-learning")
    def active_learning(
        strategy: str = "entropy",
        batch_size: int = 20,
        committee_size: int = 5,
        seed: int = 0,
    ) -> None:
        """Simulated active learning on scikit-learn's digits (pool = train split, oracle = its labels).

        ``strategy``, ``batch_size`` and ``committee_size`` go to every round's query, ``seed`` to every
        task that draws; ``-p initial_per_class=5`` is split_pool's.
        """
        source = digits_examples(eval_ratio=0.3, seed=seed)
        start = split_pool(examples=source.outputs["examples"], seed=seed)
        labeled, pool = start.outputs["labeled"], start.outputs["pool"]
        for _ in range(rounds):
            picked = query(
                labeled=labeled, pool=pool, strategy=strategy, batch_size=batch_size, committee_size=committee_size, seed=seed
            )
            labeled = annotate(labeled=labeled, batch=picked.outputs["batch"], oracle=start.outputs["oracle"]).outputs["updated"]
            pool = picked.outputs["remaining"]
        learning_curve(labeled=labeled, test=source.outputs["examples"])

    return active_learning


active_learning = build()
