"""Images in figures (audit.images): at most 64×64 pixels in results.json, by adaptive average pooling."""

from __future__ import annotations

import numpy as np
import torch

from audit.images import MAX_SIDE, downsampled_note, figure_heatmap, figure_image, pooled


def test_a_large_image_is_the_mean_of_its_blocks_and_a_small_one_is_unchanged() -> None:
    img = torch.from_numpy(np.random.default_rng(0).random((3, 224, 224), dtype=np.float32))
    small = pooled(img)
    assert small.shape == (3, 64, 64)
    torch.testing.assert_close(small, torch.nn.functional.adaptive_avg_pool2d(img[None], 64)[0])
    exact = torch.from_numpy(np.random.default_rng(1).random((1, 128, 128), dtype=np.float32))
    blocks = exact.unfold(1, 2, 2).unfold(2, 2, 2).mean((-1, -2))  # each output pixel: the mean of a 2×2 block
    torch.testing.assert_close(pooled(exact), blocks)
    assert pooled(torch.rand(1, 128, 192)).shape == (1, 43, 64)  # the aspect ratio kept
    tiny = torch.rand(1, 8, 8)
    assert torch.equal(pooled(tiny), tiny)


def test_figure_images_are_bounded_channels_last_and_heatmaps_scaled_to_one() -> None:
    rgb = np.random.default_rng(0).random((3, 224, 224)).astype(np.float32)
    out = np.asarray(figure_image(rgb))
    assert out.shape == (MAX_SIDE, MAX_SIDE, 3) and 0 <= out.min() and out.max() <= 1
    assert np.asarray(figure_image(rgb[:1])).shape == (MAX_SIDE, MAX_SIDE)
    heat = np.asarray(figure_heatmap(torch.rand(224, 224) * 7))
    assert heat.shape == (MAX_SIDE, MAX_SIDE) and heat.max() == 1.0
    # an 8×8 image is stored as before: rounded, unpooled
    small = torch.rand(1, 8, 8)
    assert figure_image(small) == small[0].round(decimals=4).tolist()


def test_the_caption_says_when_images_were_downsampled() -> None:
    assert downsampled_note((12, 3, 32, 32)) == ""
    assert "224×224 pixels are stored and drawn at 64×64" in downsampled_note((12, 3, 224, 224))
