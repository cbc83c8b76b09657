"""LesionCNN budget (the paper's ~692K parameters / ~30.04M MACs) and the ResNet50 baseline."""

import torch

from skin_plugin.complexity import count_complexity
from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH, NUM_CLASSES
from skin_plugin.networks import ACTIVATIONS, LesionCNN, load_lesioncnn, resnet50_baseline

MAX_PARAMS = 700_000
MAX_MACS = 30_100_000


def test_lesioncnn_within_paper_budget():
    c = count_complexity(LesionCNN())
    assert c.input_shape == (3, INPUT_HEIGHT, INPUT_WIDTH)
    assert c.params <= MAX_PARAMS, f"{c.params} parameters exceed the budget of {MAX_PARAMS}"
    assert c.macs <= MAX_MACS, f"{c.macs} MACs per image exceed the budget of {MAX_MACS}"
    # The budget is the paper's size, not a far smaller model.
    assert c.params >= 0.9 * 692_000 and c.macs >= 0.9 * 30_040_000


def test_shipped_network_within_paper_budget():
    """Whatever network the release ships (LesionCNN or a pretrained student) keeps the paper's budget,
    and its manifest states the measured size."""
    from skin_plugin.networks import build_network
    from skin_plugin.release import ModelRelease

    release = ModelRelease.load()
    c = count_complexity(build_network(release.network, release.activation))
    assert c.params <= MAX_PARAMS and c.macs <= MAX_MACS, c
    assert (release.manifest["params"], release.manifest["macs"]) == (c.params, c.macs)


def test_budget_counter_catches_a_larger_model():
    """The counter sees input size: the same network at 224x224 breaks the MAC budget."""
    assert count_complexity(LesionCNN(), (3, 224, 224)).macs > MAX_MACS


def test_lesioncnn_forward_shape():
    model = LesionCNN().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, INPUT_HEIGHT, INPUT_WIDTH))
    assert out.shape == (2, NUM_CLASSES)


def test_resnet50_baseline_is_the_papers_heavy_model():
    c = count_complexity(resnet50_baseline(), (3, 224, 224))
    assert 23_000_000 < c.params < 24_000_000  # paper: 23.9M
    assert 3.9e9 < c.macs < 4.2e9  # paper: 4.00G at 224x224


def test_every_activation_keeps_the_budget():
    """The nonlinearity has no weights: each choice has the same parameters and MACs."""
    counts = {name: count_complexity(LesionCNN(activation=name)) for name in ACTIVATIONS}
    assert len({(c.params, c.macs) for c in counts.values()}) == 1
    model = LesionCNN(activation="silu")
    assert any(isinstance(m, torch.nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())


def test_loader_builds_the_checkpoints_activation(tmp_path):
    """A training checkpoint records its activation; the loader rebuilds the same network."""
    trained = LesionCNN(activation="silu").eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": trained.state_dict(), "config": {"activation": "silu"}}, path)
    loaded = load_lesioncnn(path)
    x = torch.randn(2, 3, INPUT_HEIGHT, INPUT_WIDTH)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
