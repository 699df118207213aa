"""Priors in model cards and config files: priorfit's by name, a user's dataclass by its module."""

import dataclasses
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import priorfit as pf
from priorfit.priors import GP, Mixture, Normal, Uniform, prior_from_config, prior_to_config

USER_PRIORS = '''
"""A user's own priors, as a package of theirs would define them."""

from dataclasses import dataclass, field

import torch

from priorfit.priors import Batch, Uniform


@dataclass
class Sine:
    """y = amplitude * sin(frequency * x) + noise, on inputs from ``inputs``."""

    num_features: int = 1
    amplitude: float = 1.0
    frequency: list = field(default_factory=lambda: [3.0])
    inputs: object = field(default_factory=Uniform)

    def sample(self, batch_size, seq_len, *, generator=None, device=None):
        x = self.inputs.sample((batch_size, seq_len, self.num_features), generator=generator)
        y = self.amplitude * torch.sin(x * torch.tensor(self.frequency)).sum(-1)
        return Batch(x, y + 0.01 * torch.randn(y.shape, generator=generator))


class Outer:
    @dataclass
    class Inner:
        num_features: int = 1


class NotADataclass:
    num_features = 1
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh, importable module ``user_priors_for_test`` (on ``sys.path`` for this test)."""
    name = "user_priors_for_test"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_PRIORS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def forget(module) -> None:
    """Make ``module`` unimportable, as in a process where its package is not installed."""
    sys.modules.pop(module.__name__, None)
    sys.path.remove(str(Path(module.__file__).parent))
    importlib.invalidate_caches()


def test_user_dataclass_prior_round_trips_through_its_module(user_module):
    prior = user_module.Sine(num_features=2, amplitude=0.5, frequency=[1.0, 2.0],
                             inputs=Normal(0.0, 2.0))
    config = prior_to_config(prior)
    assert config["class"] == "user_priors_for_test:Sine"
    assert config["inputs"] == {"class": "Normal", "mean": 0.0, "std": 2.0}
    # rebuilt in a fresh import of the module, as another process would
    sys.modules.pop(user_module.__name__)
    rebuilt = prior_from_config(config)
    assert type(rebuilt).__module__ == "user_priors_for_test" and type(rebuilt) is not type(prior)
    assert dataclasses.asdict(rebuilt) == dataclasses.asdict(prior)
    assert prior_to_config(rebuilt) == config


def test_nested_user_class_round_trips(user_module):
    config = prior_to_config(user_module.Outer.Inner(num_features=3))
    assert config == {"class": "user_priors_for_test:Outer.Inner", "num_features": 3}
    assert prior_from_config(config) == user_module.Outer.Inner(num_features=3)


def test_mixture_of_a_user_and_a_builtin_prior_round_trips(user_module):
    prior = Mixture([user_module.Sine(), GP(num_features=1, lengthscale=0.3)], [0.25, 0.75])
    config = prior_to_config(prior)
    assert config["class"] == "Mixture"
    assert [p["class"] for p in config["priors"]] == ["user_priors_for_test:Sine", "GP"]
    rebuilt = prior_from_config(config)
    assert rebuilt == prior
    generator = torch.Generator().manual_seed(0)
    assert rebuilt.sample(8, 5, generator=generator).x.shape == (8, 5, 1)


def test_missing_module_is_a_clear_error(user_module):
    config = prior_to_config(Mixture([user_module.Sine(), GP(num_features=1)]))
    forget(user_module)
    message = (r"prior class 'Sine': module 'user_priors_for_test' was not found; "
               r"the module must be importable .*installed, or on PYTHONPATH")
    with pytest.raises(ValueError, match=message):
        prior_from_config(config)


def test_a_module_whose_own_import_fails_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_priors_for_test.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"importing module 'broken_priors_for_test' failed "
                                         r"\(No module named 'no_such_dependency_xyz'\)"):
        prior_from_config({"class": "broken_priors_for_test:Prior"})
    assert "broken_priors_for_test" not in sys.modules


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("user_priors_for_test:NotADataclass", "'NotADataclass' of module .* is not a dataclass"),
        ("collections:OrderedDict", "is not a dataclass"),
        ("os:system", "is not a class"),
        ("user_priors_for_test:Missing", "module 'user_priors_for_test' does not define it"),
        ("__main__:Gone", "defined in a script run as __main__"),
        ("user_priors_for_test:Outer.__class__", "malformed prior class"),
        ("user_priors_for_test:Sine()", "malformed prior class"),
        ("os; import x:Sine", "malformed prior class"),
        (".relative:Sine", "malformed prior class"),
        ("user_priors_for_test:make.<locals>.Local", "defined inside a function"),
        ("Nope", "unknown prior class 'Nope'"),
        ("Batch.__class__", "unknown prior class"),
    ],
)
def test_refused_classes(user_module, name, match):
    with pytest.raises(ValueError, match=match):
        prior_from_config({"class": name})


def test_a_non_dataclass_prior_cannot_be_serialised(user_module):
    with pytest.raises(TypeError, match="not a dataclass"):
        prior_to_config(user_module.NotADataclass())
    with pytest.raises(TypeError, match="not a dataclass"):
        prior_to_config(GP)  # the class, not a prior


@pytest.mark.parametrize(
    "prior",
    [
        GP(num_features=2, lengthscale=[0.2, 0.4], inputs=Normal(1.0, 2.0)),
        Mixture([GP(), GP(kernel="matern32", inputs=Uniform(-1.0, 1.0))], [0.5, 0.5]),
        pf.priors.BNN(num_features=3),
        pf.priors.GPHyperPrior(num_features=2),
    ],
)
def test_builtin_priors_are_written_by_name_as_before(prior):
    config = prior_to_config(prior)
    assert config["class"] == type(prior).__name__
    assert all(name in pf.priors.__all__ for name in classes(config)), classes(config)
    assert prior_from_config(config) == prior


def test_shipped_model_cards_still_rebuild_and_name_their_classes_as_before():
    for name in pf.zoo.names():
        card = pf.load(name).card["prior"]
        rewritten = prior_to_config(prior_from_config(card))
        assert classes(rewritten) == classes(card), name
        assert all(c in pf.priors.__all__ for c in classes(card)), name


def classes(config) -> list[str]:
    """The ``"class"`` entries of a prior config, nested ones included, in order."""
    if isinstance(config, dict):
        own = [config["class"]] if "class" in config else []
        return own + [c for value in config.values() for c in classes(value)]
    if isinstance(config, list):
        return [c for value in config for c in classes(value)]
    return []


def test_a_subclass_of_a_builtin_prior_is_named_by_its_module(user_module):
    # a user's class that shares a built-in's name is not confused with it
    namespace = {"__module__": user_module.__name__, "__qualname__": "GP"}
    user_gp = dataclasses.dataclass(type("GP", (GP,), namespace))
    user_module.GP = user_gp
    config = prior_to_config(user_gp(num_features=1))
    assert config["class"] == "user_priors_for_test:GP"
    assert type(prior_from_config(config)) is user_gp


def test_a_model_trained_on_a_user_prior_names_it_in_its_card(user_module, tmp_path):
    prior = user_module.Sine(amplitude=2.0)
    train = pf.TrainConfig(steps=1, batch_size=4, seq_len=12, max_train=8, warmup_steps=1,
                           border_datasets=16, val_batches=1, out_dir=str(tmp_path / "run"))
    model_config = pf.ModelConfig(num_features=1, num_outputs=16, d_model=16, num_heads=2,
                                  num_layers=1, d_ff=16)
    pf.train(prior, train, model_config, progress=False)
    card = pf.load(tmp_path / "run" / "model.safetensors").card
    assert card["prior"]["class"] == "user_priors_for_test:Sine"
    assert prior_from_config(card["prior"]) == prior
