import pytest
import torch

from studylib.core.runtime import select_device
from studylib.models import build_model
from studylib.training import TrainConfig, checkpoint_key, evaluate, fit


class _Split:
    def __init__(self, x, y):
        self.x, self.y = x, y


def _toy(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()  # top half brighter
    return _Split(x, y)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("small_cnn", dict(image_size=8), (2, 1, 8, 8)),
    ("lenet", dict(image_size=28, batchnorm=True), (2, 1, 28, 28)),
    ("mlp", dict(in_features=64, hidden=(32, 16)), (2, 1, 8, 8)),
    ("resnet", dict(in_channels=3, image_size=32, blocks_per_stage=(1, 2, 1)), (2, 3, 32, 32)),
])
def test_models_forward_shapes_and_config(name, kwargs, shape):
    m = build_model(name, num_classes=7, seed=0, **kwargs)
    same = build_model(name, num_classes=7, seed=0, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), same.state_dict().values(), strict=True))
    assert m(torch.zeros(shape)).shape == (2, 7)
    assert m.config["name"] == name and m.config["num_classes"] == 7


def test_build_model_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="valid"):
        build_model("vgg")
    with pytest.raises(ValueError, match="depth"):
        build_model("mlp", depth=3)


def test_seeded_build_does_not_touch_global_rng():
    torch.manual_seed(5)
    a = torch.rand(1)
    torch.manual_seed(5)
    build_model("mlp", seed=1)
    assert torch.equal(torch.rand(1), a)


@pytest.mark.parametrize("name, kwargs", [("small_cnn", {"batchnorm": True}),
                                          ("lenet", {"batchnorm": True}),
                                          ("resnet", {"widths": [4, 8, 16]})])
def test_build_leaves_batchnorm_statistics_at_their_initial_values(name, kwargs):
    """Building runs one shape-probing forward pass; it must not count as a training batch."""
    model = build_model(name, in_channels=1, num_classes=3, image_size=16, seed=0, **kwargs)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and model.training
    for bn in bns:
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_fit_learns_and_cache_returns_same_weights(tmp_path):
    data, cfg = _toy(n=1024), TrainConfig(epochs=15, batch_size=128, lr=1e-2)
    m1 = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), data, cfg, seed=0,
             cache_dir=tmp_path, progress=False)
    assert not m1.from_cache
    assert evaluate(m1, _toy(seed=1), "cpu")["accuracy"] > 0.85
    assert len(list(tmp_path.glob("*.pt"))) == 1
    m2 = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), _toy(n=1024), cfg,
             seed=0, cache_dir=tmp_path, progress=False)
    assert m2.from_cache and m2.history == m1.history
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_fit_is_deterministic_without_cache(tmp_path):
    data, cfg = _toy(), TrainConfig(epochs=2, batch_size=32)
    ws = [fit(build_model("small_cnn", image_size=8, num_classes=2, seed=3), data, cfg, seed=4,
              cache=False, progress=False).state_dict() for _ in range(2)]
    assert all(torch.equal(ws[0][k], ws[1][k]) for k in ws[0])


def test_cache_key_changes_with_every_input():
    data, cfg = _toy(), TrainConfig(epochs=1)
    m = build_model("mlp", in_features=64, num_classes=2, seed=0)
    base = checkpoint_key(m, data, cfg, 0, "cross_entropy")
    assert base == checkpoint_key(build_model("mlp", in_features=64, num_classes=2, seed=0),
                                  _toy(), cfg, 0, "cross_entropy")
    assert base != checkpoint_key(m, data, cfg, 1, "cross_entropy")
    assert base != checkpoint_key(m, data, TrainConfig(epochs=2), 0, "cross_entropy")
    assert base != checkpoint_key(m, data, cfg, 0, "pgd_at(eps=0.1)")
    assert base != checkpoint_key(m, _toy(seed=9), cfg, 0, "cross_entropy")
    assert base != checkpoint_key(build_model("mlp", in_features=64, num_classes=2, seed=1),
                                  data, cfg, 0, "cross_entropy")


def test_cache_key_changes_with_the_package_code(monkeypatch):
    """A model trained by older code must not be served after studylib's code changed."""
    from studylib.core import io

    data, cfg = _toy(), TrainConfig(epochs=1)
    m = build_model("mlp", in_features=64, num_classes=2, seed=0)
    base = checkpoint_key(m, data, cfg, 0, "cross_entropy")
    assert len(io.code_digest()) == 64 and io.code_digest() == io.code_digest()
    monkeypatch.setattr(io, "code_digest", lambda: "0" * 64)
    assert checkpoint_key(m, data, cfg, 0, "cross_entropy") != base


def test_corrupt_checkpoint_is_discarded_and_rebuilt(tmp_path):
    data, cfg = _toy(), TrainConfig(epochs=1)
    m = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), data, cfg, seed=0,
            cache_dir=tmp_path, progress=False)
    (ckpt,) = tmp_path.glob("*.pt")
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="discarding"):
        m2 = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), data, cfg, seed=0,
                 cache_dir=tmp_path, progress=False)
    assert not m2.from_cache
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True))
    assert torch.load(ckpt, weights_only=True)["state_dict"]


def test_custom_loss_requires_an_id():
    with pytest.raises(ValueError, match="loss_id"):
        fit(build_model("mlp", in_features=64, num_classes=2), _toy(), TrainConfig(epochs=1),
            seed=0, loss_fn=lambda m, x, y: m(x).sum(), cache=False)


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            select_device("cuda")


def test_eval_mode_restores_the_previous_mode_even_on_error():
    from studylib.models import eval_mode

    model = build_model("small_cnn", in_channels=1, num_classes=3, image_size=8, seed=0,
                        batchnorm=True)
    model.train()
    with eval_mode(model) as m:
        assert m is model and not model.training
        assert not any(mod.training for mod in model.modules())
    assert model.training and all(mod.training for mod in model.modules())
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert not model.training  # an eval model stays in eval mode
    model.train()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training


def test_tracked_accuracies_leave_the_run_unchanged_and_equal_shorter_runs(tmp_path):
    """``fit(track=...)`` measures accuracy after every epoch without changing the run: the
    weights equal those of a run without tracking, and entry k-1 equals the accuracy of a
    separate k-epoch run from the same initialisation and seed (no schedule), the independent
    answer the plateau check of study 04 used to compute by training twice."""
    data, test = _toy(n=256), _toy(seed=1, n=128)

    def run(epochs, **kw):
        return fit(build_model("small_cnn", image_size=8, num_classes=2, seed=0, batchnorm=True),
                   data, TrainConfig(epochs=epochs, batch_size=32, lr=1e-2), seed=1,
                   progress=False, **kw)

    tracked = run(4, cache=False, track=test)
    plain = run(4, cache=False)
    assert all(torch.equal(a, b) for a, b in zip(tracked.state_dict().values(),
                                                 plain.state_dict().values(), strict=True))
    assert len(tracked.track_accuracy) == 4
    assert tracked.track_accuracy[-1] == evaluate(plain, test)["accuracy"]
    assert tracked.track_accuracy[1] == evaluate(run(2, cache=False), test)["accuracy"]
    # cache: a checkpoint written without tracking is trained again when tracking is asked for,
    # one written with it returns the same accuracies; another split is trained again
    assert not run(4, cache_dir=tmp_path).from_cache
    again = run(4, cache_dir=tmp_path, track=test)
    assert not again.from_cache and again.track_accuracy == tracked.track_accuracy
    hit = run(4, cache_dir=tmp_path, track=test)
    assert hit.from_cache and hit.track_accuracy == tracked.track_accuracy
    assert not run(4, cache_dir=tmp_path, track=_toy(seed=2, n=64)).from_cache


def test_small_cnn_is_channels_last_and_the_layout_is_invisible():
    """SmallCNN keeps its conv weights channels-last (faster CPU max-pooling): the same
    function as the NCHW layout up to float noise, the same state_dict names, shapes and
    values, and the same checkpoint key."""
    m = build_model("small_cnn", in_channels=3, num_classes=5, image_size=16, seed=0)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last)
                         and not c.weight.is_contiguous() for c in convs)
    nchw = build_model("small_cnn", in_channels=3, num_classes=5, image_size=16, seed=0)
    nchw.to(memory_format=torch.contiguous_format)
    assert all(c.weight.is_contiguous() for c in nchw.modules() if isinstance(c, torch.nn.Conv2d))
    sd, sd0 = m.state_dict(), nchw.state_dict()
    assert list(sd) == list(sd0) and all(torch.equal(sd[k], sd0[k]) for k in sd)
    x = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(x), nchw(x), rtol=1e-5, atol=1e-6)
    data, cfg = _toy(), TrainConfig(epochs=1)
    a = build_model("small_cnn", image_size=8, num_classes=2, seed=0)
    b = build_model("small_cnn", image_size=8, num_classes=2, seed=0)
    b.to(memory_format=torch.contiguous_format)
    assert checkpoint_key(a, data, cfg, 0, "ce") == checkpoint_key(b, data, cfg, 0, "ce")
    # a checkpoint loads into the channels-last model and keeps its layout
    a.load_state_dict(b.state_dict())
    assert a.features[0].weight.is_contiguous(memory_format=torch.channels_last)
