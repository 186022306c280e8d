"""Block-DCT front end, channel selections and the channel-wise Grad-CAM scorer."""

import numpy as np
import pytest
import scipy.fft
import torch
from torch import nn

from wrapkit.models.dct import (DCTFrontEnd, block_dct, dct_basis, heatmap_channels,
                                pad_to_block, square_channels, zigzag_channels, zigzag_order)
from wrapkit.models.dct_heatmap import channel_scores, gradcam
from wrapkit.models.dct_nets import GridResNet, PixelPatches


def test_block_dct_equals_scipy_dctn_ortho_per_block():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 24)).astype(np.float64) - 128
    got = block_dct(torch.from_numpy(img)[None, None]).numpy()[0]       # (64, 2, 3)
    assert got.shape == (64, 2, 3)
    for by in range(2):
        for bx in range(3):
            want = scipy.fft.dctn(img[8 * by:8 * by + 8, 8 * bx:8 * bx + 8], norm="ortho")
            np.testing.assert_allclose(got[:, by, bx].reshape(8, 8), want, atol=1e-9)


def test_basis_is_orthonormal_and_dc_is_the_scaled_mean():
    b = dct_basis().reshape(64, 64)
    np.testing.assert_allclose(b @ b.T, np.eye(64), atol=1e-12)
    x = torch.full((1, 1, 8, 8), 5.0, dtype=torch.float64)
    y = block_dct(x)[0, :, 0, 0]
    assert y[0].item() == pytest.approx(40.0)           # 8 · mean
    assert torch.abs(y[1:]).max().item() < 1e-12


def test_multichannel_input_is_transformed_per_channel():
    x = torch.randn(2, 3, 8, 16, dtype=torch.float64)
    y = block_dct(x)
    assert y.shape == (2, 192, 1, 2)
    torch.testing.assert_close(y[:, 64:128], block_dct(x[:, 1:2]))


def test_block_dct_refuses_sizes_off_the_block():
    with pytest.raises(ValueError, match="pad_to_block"):
        block_dct(torch.zeros(1, 1, 28, 28))
    assert pad_to_block(torch.zeros(1, 1, 28, 28)).shape[-2:] == (32, 32)


def test_zigzag_follows_jpeg():
    # JPEG's zig-zag scan of the first 10 coefficients as (row u, column v).
    jpeg = [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0)]
    assert zigzag_order()[:10] == [u * 8 + v for u, v in jpeg]
    assert sorted(zigzag_order()) == list(range(64))
    assert zigzag_order()[-1] == 63
    assert zigzag_channels(3) == [0, 1, 8]


def test_square_and_heatmap_selections():
    assert square_channels(2) == [0, 1, 8, 9]
    assert len(square_channels(4)) == 16
    scores = np.array([4.0, 0.0, 2.0, 1.0, 0.5])
    assert heatmap_channels(scores, 0.3) == [0, 2]
    assert heatmap_channels(scores, 0.0) == [0, 2, 3, 4]
    assert heatmap_channels(scores, 1.0) == [0]             # the best one always stays
    with pytest.raises(ValueError, match="positive"):
        heatmap_channels(np.zeros(3), 0.1)


@pytest.mark.parametrize("factor, grid", [(1, 4), (2, 7), (4, 14)])
def test_front_end_shapes_and_standardisation(factor, grid):
    x = torch.rand(20, 1, 28, 28)
    fe = DCTFrontEnd(factor, square_channels(3)).fit(x)
    y = fe(x)
    assert y.shape == (20, 9, grid, grid)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(9), atol=1e-4, rtol=0)
    # Unresized, the raw DC coefficient of a block is 8 · (mean pixel − 128).
    raw = DCTFrontEnd(1).coefficients(torch.ones(1, 1, 8, 8))
    assert raw[0, 0, 0, 0].item() == pytest.approx(8 * 127, rel=1e-5)


class _LinearCam(nn.Module):
    """conv -> mean -> linear: Grad-CAM has a closed form (alpha = W[t]/area)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 5, bias=False)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_gradcam_matches_its_closed_form():
    m = _LinearCam()
    x = torch.randn(6, 3, 5, 5)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    cam = gradcam(m, m.conv, x, t)
    a = m.conv(x).detach()
    alpha = m.fc.weight.detach()[t] / 25.0
    want = torch.relu((alpha[:, :, None, None] * a).sum(1))
    torch.testing.assert_close(cam, want)


def test_channel_scores_mask_every_other_channel():
    m = _LinearCam()
    x = torch.randn(8, 3, 5, 5)
    t = torch.arange(8) % 5
    scores = channel_scores(m, m.conv, x, t, batch_size=3)
    for ch in range(3):
        masked = torch.zeros_like(x)
        masked[:, ch] = x[:, ch]
        want = gradcam(m, m.conv, masked, t).mean().item()
        assert scores[ch] == pytest.approx(want, rel=1e-5)
    # A channel the network ignores scores zero.
    with torch.no_grad():
        m.conv.weight[:, 1] = 0
    assert channel_scores(m, m.conv, x, t)[1] == 0.0


def test_grid_resnet_pixels_and_dct_share_the_token_grid():
    x = torch.rand(4, 1, 28, 28)
    pix = GridResNet(PixelPatches(4), 10, width=8, blocks=1)
    dct = GridResNet(DCTFrontEnd(2).fit(x), 10, width=8, blocks=1)
    assert pix.front(x).shape[-2:] == dct.front(x).shape[-2:] == (7, 7)
    assert pix(x).shape == dct(x).shape == (4, 10)
    assert dct.features(x).shape == (4, 8)
