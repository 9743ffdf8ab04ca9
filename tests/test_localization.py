"""Pixel AUROC and PRO on hand-built anomaly maps."""
import numpy as np
import pytest

from kdcompress.bench import localization as loc
from kdcompress.errors import KDError


def _two_regions():
    """Image 0: region A (2 pixels, map 5); image 1: region B (4 pixels, map 1); 34 defect-free pixels, two of
    them at 3 and the rest at 0."""
    maps, masks = np.zeros((2, 4, 5)), np.zeros((2, 4, 5), dtype=bool)
    masks[0, 0, 0:2], maps[0, 0, 0:2] = True, 5.0
    masks[1, 2:4, 3:5], maps[1, 2:4, 3:5] = True, 1.0
    maps[0, 3, 0:2] = 3.0
    return maps, masks


def test_pro_averages_over_regions_not_pixels():
    maps, masks = _two_regions()
    fpr, pro = loc.pro_curve(maps, masks)
    # above 3: region A only -> overlap 1/2 (its 2 of the 6 defect pixels would give 1/3); above 0: both
    assert fpr == pytest.approx([0, 0, 0, 2 / 34, 2 / 34, 1]) and pro == pytest.approx([0, 0, 0.5, 0.5, 1, 1])
    # area to FPR 0.3: 2/34 at PRO 1/2, then 0.3 - 2/34 at PRO 1; divided by 0.3
    assert loc.pro_auc(maps, masks) == pytest.approx((2 / 34 * 0.5 + (0.3 - 2 / 34)) / 0.3)
    assert loc.pro_auc(maps, masks, max_fpr=0.05) == pytest.approx(0.5)


def test_pixel_auroc_counts_pixels():
    maps, masks = _two_regions()
    # defect pixels at 5 beat all 34 normal pixels; those at 1 beat the 32 at 0
    assert loc.pixel_auroc(maps, masks) == pytest.approx((2 * 34 + 4 * 32) / (6 * 34))


def test_perfect_and_inverted_maps():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(3, 8, 8)) < 0.2
    assert loc.pixel_auroc(masks * 1.0, masks) == 1.0 and loc.pro_auc(masks * 1.0, masks) == 1.0
    assert loc.pixel_auroc(1.0 - masks, masks) == 0.0 and loc.pro_auc(1.0 - masks, masks) == 0.0


def test_metrics_depend_on_the_ranking_only_and_take_flat_rows():
    rng = np.random.default_rng(1)
    masks = np.zeros((4, 12, 12), dtype=bool)
    masks[:, 3:6, 4:9] = True
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    values = loc.pixel_auroc(maps, masks), loc.pro_auc(maps, masks)
    assert 0.6 < values[0] < 1 and 0.3 < values[1] < 1
    assert (loc.pixel_auroc(np.exp(maps), masks), loc.pro_auc(np.exp(maps), masks)) == pytest.approx(values)
    flat = maps.reshape(4, -1), masks.reshape(4, -1)
    assert loc.pro_auc(*flat, shape=(12, 12)) == pytest.approx(values[1])


def test_thinned_thresholds_stay_close(monkeypatch):
    rng = np.random.default_rng(2)
    masks = np.zeros((6, 16, 16), dtype=bool)
    masks[:, 5:9, 5:11] = True
    maps = rng.normal(size=masks.shape) + masks
    exact = loc.pro_auc(maps, masks)
    monkeypatch.setattr(loc, "MAX_THRESHOLDS", 200)
    assert loc.pro_auc(maps, masks) == pytest.approx(exact, abs=0.01)


def test_regions_are_eight_connected_and_per_image():
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    masks[0, 4, 4] = True  # a second region
    masks[1, 0, 0] = True  # same place, other image: a third
    regions = loc.defect_regions(masks)
    assert [(i, sorted(p.tolist())) for i, p in regions] == [(0, [0, 6]), (0, [24]), (1, [0])]


@pytest.mark.parametrize("maps, masks, message", [
    (np.full((1, 4, 4), np.nan), np.ones((1, 4, 4)), "contain NaN"),
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), "must both be"),
    (np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), "defect"),
    (np.zeros((2, 4, 4)), np.ones((2, 4, 4)), "defect-free"),
])
def test_bad_maps_and_masks_are_named(maps, masks, message):
    for metric in (loc.pixel_auroc, loc.pro_auc):
        with pytest.raises(KDError, match=message):
            metric(maps, masks)


def test_max_fpr_must_be_a_fraction():
    maps, masks = _two_regions()
    with pytest.raises(KDError, match="max_fpr"):
        loc.pro_auc(maps, masks, max_fpr=0)
