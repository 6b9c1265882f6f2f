"""Thompson sampling: it learns which variant converts best and sends it most of the traffic,
reproducibly for a seed, and its allocations always account for every recipient."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reengage.cli import app
from reengage.experiments.bandit import ThompsonBandit, simulate


def test_a_clear_winner_gets_most_of_the_last_batches() -> None:
    run = simulate({"a": 0.02, "b": 0.08, "c": 0.03}, rounds=30, batch=300, seed=1)
    assert run.best == "b"
    assert run.share_best_by_round[0] < 0.6  # it starts out exploring
    assert run.final_share_best > 0.9
    assert run.probability_best["b"] > 0.99
    assert run.conversions > run.conversions_fixed_split


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not() -> None:
    rates = {"a": 0.03, "b": 0.035}
    one = simulate(rates, rounds=10, batch=200, seed=5)
    assert simulate(rates, rounds=10, batch=200, seed=5) == one
    assert simulate(rates, rounds=10, batch=200, seed=6).sent != one.sent


def test_posterior_follows_the_answers() -> None:
    bandit = ThompsonBandit.over(["x", "y"])
    bandit.update("x", 1000, 10)
    bandit.update("y", 1000, 100)
    rng = np.random.default_rng(0)
    assert bandit.choose(rng, 50) == ["y"] * 50
    assert bandit.probability_best(rng)["y"] == 1.0
    assert bandit.as_dict()["y"] == {"trials": 1000, "successes": 100, "rate": 0.1}


def test_bad_updates_and_arms_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one arm"):
        ThompsonBandit.over([])
    with pytest.raises(ValueError, match="distinct"):
        ThompsonBandit.over(["a", "a"])
    bandit = ThompsonBandit.over(["a"])
    with pytest.raises(KeyError, match="unknown arm 'b'"):
        bandit.update("b", 1, 0)
    with pytest.raises(ValueError, match="successes <= trials"):
        bandit.update("a", 1, 2)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=6),
    st.integers(0, 2000),
    st.integers(0, 2**32 - 1),
)
def test_an_allocation_accounts_for_every_recipient(
    history: list[tuple[int, int]], n: int, seed: int
) -> None:
    bandit = ThompsonBandit.over([f"arm{i}" for i in range(len(history))])
    for i, (a, b) in enumerate(history):
        bandit.update(f"arm{i}", a + b, a)
    allocation = bandit.allocate(np.random.default_rng(seed), n)
    assert set(allocation) == set(bandit.arms)
    assert sum(allocation.values()) == n and min(allocation.values()) >= 0


def test_cli_simulates_and_names_a_bad_rate() -> None:
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "experiments",
            "bandit",
            "--rates",
            "a=0.01,b=0.09",
            "--rounds",
            "20",
            "--seed",
            "2",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["best"] == "b" and data["share_best_last_round"] > 0.9
    bad = runner.invoke(app, ["experiments", "bandit", "--rates", "a=0.01,b=1.5"])
    assert bad.exit_code == 2
    assert "'b=1.5'" in bad.output
