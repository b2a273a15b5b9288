"""A checkpoint of the first format, resumed through the training command (test_old_checkpoints.py), must land on
minivae 0.1.0's numbers only if every piece of the translation is right: each plausible one-line mistake in it below
must make that test fail. (tests/planting.py plants them; the ids name them.)
"""

import pytest
import test_old_checkpoints as old
from planting import Mistake, fails, plant

first_format = old.test_a_checkpoint_of_the_first_format_resumes_to_the_numbers_that_version_reached
FROM_OLDER, TOTALS = "core.optim.Adam.from_older", "run.training._totals"
MISTAKES = [
    Mistake("first-adam-moments-multiplied-not-divided", FROM_OLDER,
            "value / (1 - beta)", "value * (1 - beta)", first_format),
    Mistake("first-adam-moments-with-the-betas-swapped", FROM_OLDER,
            'self.beta1 if moment == "m" else self.beta2', 'self.beta2 if moment == "m" else self.beta1', first_format),
    Mistake("first-adam-moments-kept-as-they-are", FROM_OLDER,
            "value / (1 - beta)", "value", first_format),
    Mistake("first-adam-step-count-restarts", FROM_OLDER,
            'renamed = {"t": saved["t"]}', 'renamed = {"t": 0}', first_format),
    Mistake("first-totals-recon-and-kl-swapped", TOTALS,
            '("loss", "recon", "kl")', '("loss", "kl", "recon")', first_format),
    Mistake("first-totals-without-their-examples", TOTALS,
            '"examples": sums[3]', '"examples": 0', first_format),
    Mistake("first-totals-dropped", TOTALS,
            'return {"sums": dict(zip(("loss", "recon", "kl"), sums[:3])), "examples": sums[3]}', "return {}",
            first_format),
]


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder or network: everything comes from the fixtures."""


def test_the_catching_test_passes_without_a_planted_mistake():
    assert not fails(first_format)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_planted_mistake_fails_its_test(monkeypatch, mistake):
    plant(monkeypatch, mistake)
    assert fails(mistake.caught_by), f"{mistake.caught_by} does not catch {mistake.id}"
