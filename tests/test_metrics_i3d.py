"""The I3D path end to end, on a tiny TorchScript module with the real checkpoint's interface."""

import warnings

import pytest
import torch

from harness.metrics import MetricOptions, VideoSet, compute_metrics, default_metrics
from harness.metrics.bootstrap import bootstrap_interval
from harness.metrics.frechet import frechet_distance_of_features
from harness.metrics.fvd import fvd
from harness.metrics.i3d import ENV_VAR, I3D_RECIPES, I3DFeatures, preprocess, resolve_i3d_path


class TinyI3D(torch.nn.Module):
    """Random-weight stand-in for StyleGAN-V's i3d_torchscript.pt: same call signature,
    same [0, 255] -> [-1, 1] rescale and 224 x 224 resize, (B, 400) output; it also asserts
    what the real detector silently needs (uint8 when rescaling, RGB 224 x 224, >= 10 frames,
    values in [-1, 1])."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, kernel_size=(3, 8, 8), stride=(2, 8, 8))
        self.fc = torch.nn.Linear(8, 400)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        if rescale:
            torch._assert(x.dtype == torch.uint8, "rescale=True expects uint8 frames")
            x = x.float() * (2.0 / 255.0) - 1.0
        if resize:
            size = [x.shape[2], 224, 224]
            x = torch.nn.functional.interpolate(x, size=size, mode="trilinear", align_corners=False)
        torch._assert(x.shape[1] == 3, "expected RGB input")
        torch._assert(x.shape[3] == 224 and x.shape[4] == 224, "expected 224 x 224 frames")
        torch._assert(x.shape[2] >= 10, "expected at least 10 frames")
        torch._assert(bool(x.min() >= -1.001) and bool(x.max() <= 1.001), "expected [-1, 1]")
        logits = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))
        return logits if return_features else logits.softmax(-1)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(path))
    return path


def _videos(n, seed, frames=10):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, frames, 32, 32, generator=g) * 2 - 1


@pytest.mark.parametrize("recipe", ["stylegan-v", "resize-crop"])
def test_features_and_fvd_end_to_end(i3d_path, recipe):
    extract = I3DFeatures(i3d_path, recipe=recipe, batch_size=4)
    real, other = _videos(4, 0), _videos(4, 1)
    feats = extract(real)
    assert feats.shape == (4, 400) and feats.dtype == torch.float64
    with pytest.warns(UserWarning, match="rank-deficient"):  # 4 samples < 400 dims
        same = fvd(extract, real, real)
        diff = fvd(extract, real, other * 0.2)
    assert same.value == pytest.approx(0.0, abs=1e-6)  # deterministic features
    assert diff.value > 0 and diff.dim == 400 and diff.n_real == diff.n_fake == 4
    assert diff.name == ("FVD-I3D" if recipe == "stylegan-v" else "FVD-I3D-resize-crop")


def test_preprocessing_follows_each_recipe():
    video = torch.linspace(-1, 1, 10 * 16).view(1, 1, 10, 4, 4).repeat(1, 1, 1, 4, 4)
    sg = preprocess(video, I3D_RECIPES["stylegan-v"])
    assert sg.dtype == torch.uint8 and sg.shape == (1, 3, 10, 16, 16)  # detector resizes
    assert sg.min() == 0 and sg.max() == 255
    rc = preprocess(video, I3D_RECIPES["resize-crop"])
    assert rc.dtype == torch.float32 and rc.shape == (1, 3, 10, 224, 224)
    assert rc.min() >= -1 and rc.max() <= 1
    wide = -torch.ones(1, 3, 10, 16, 32)
    wide[..., 8:24] = 1  # the centre half of the width is what the centre crop keeps
    cropped = preprocess(wide, I3D_RECIPES["resize-crop"])
    assert cropped.shape == (1, 3, 10, 224, 224) and cropped[..., 8:-8].min() > 1 - 1e-5


def test_registry_names_the_i3d_column_with_its_interval(i3d_path):
    fake = VideoSet(_videos(6, 2), ("a 1 moving up",) * 6)
    real = VideoSet(_videos(6, 3), ("a 2 moving up",) * 6)
    options = MetricOptions(i3d=str(i3d_path), bootstrap=50)
    with pytest.warns(UserWarning, match="rank-deficient"):
        row = compute_metrics(fake, real, ["fvd-i3d"], options)
    assert set(row) == {"FVD-I3D", "FVD-I3D-lo", "FVD-I3D-hi"} and row["FVD-I3D"] > 0
    assert row["FVD-I3D-lo"] < row["FVD-I3D"] < row["FVD-I3D-hi"]
    # the same interval FVD-md gets: the same bootstrap over the extracted features
    extract = I3DFeatures(i3d_path)
    r, f = extract(real.videos).numpy(), extract(fake.videos).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lo, hi = bootstrap_interval(frechet_distance_of_features, r, f, draws=50)
    assert (row["FVD-I3D-lo"], row["FVD-I3D-hi"]) == pytest.approx((lo, hi))
    other = MetricOptions(i3d=str(i3d_path), i3d_recipe="resize-crop", bootstrap=50)
    with pytest.warns(UserWarning, match="rank-deficient"):
        row = compute_metrics(fake, real, ["fvd-i3d"], other)
    assert set(row) == {"FVD-I3D-resize-crop", "FVD-I3D-resize-crop-lo", "FVD-I3D-resize-crop-hi"}
    assert default_metrics(MetricOptions(i3d=str(i3d_path)))[0] == "fvd-i3d"


def test_env_var_and_clear_errors(i3d_path, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(i3d_path))
    assert resolve_i3d_path() == i3d_path
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match=r"i3d_torchscript\.pt.*TPDIFF_I3D.*--i3d"):
        resolve_i3d_path()
    with pytest.raises(ValueError, match="at least 10 frames"):
        I3DFeatures(i3d_path)(_videos(2, 0, frames=8))
    with pytest.raises(ValueError, match="unknown I3D recipe"):
        I3DFeatures(i3d_path, recipe="nope")
