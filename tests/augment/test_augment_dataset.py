"""boomerang.augment: the cache layout, the per-(epoch, index) choice and the Dataset wrapper."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from boomerang.augment import (
    MANIFEST_NAME,
    BoomerangAugmented,
    SamplePicker,
    available_levels,
    choose_sample,
    level_dirname,
    read_manifest,
    sample_relpath,
    write_manifest,
)


# --------------------------------------------------------------------------- helpers


def _synthetic_cache(root: pathlib.Path, keys, levels=(0.3,), k=4, images=False):
    """A cache whose sample j of key `rel` at level L is a 4x4 gray PNG of value 10*j + level index
    (or, with images=False, only the manifests: enough for the picker)."""
    from PIL import Image

    for li, lv in enumerate(levels):
        rows = []
        for rel in keys:
            for j in range(k):
                name = sample_relpath(rel, j)
                if images:
                    p = root / level_dirname(lv) / name
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.full((4, 4), 10 * j + li, np.uint8)).save(p)
                rows.append({"file_name": name, "source": rel, "sample_index": j, "level": lv})
        write_manifest(root / level_dirname(lv), rows)
    return root


@pytest.fixture(scope="module")
def digit_cache(tmp_path_factory):
    """Real digits: 2 per class of mnist5k's training split in class folders, and 2 Boomerang
    samples of each at level 0.2 from the bundled model, in the augment layout."""
    import boomerang
    from boomerang.data import load_dataset, load_split
    from boomerang.assets import default_model_path
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    ds = load_dataset("mnist5k")
    train = load_split(default_model_path() / "split.json")["train"]
    picked = [i for c in range(10) for i in [t for t in train if ds.labels[t] == c][:2]]
    model = boomerang.load()
    items, rows = [], []
    for idx in picked:
        label = int(ds.labels[idx])
        rel = f"{label}/{idx:04d}.png"
        src = root / "in" / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[idx, 0]).save(src)
        samples = boomerang.sample(str(src), model=model, level=0.2, num_samples=2, seed=idx, steps=20)
        for j, img in enumerate(samples):
            name = sample_relpath(rel, j)
            out = root / "cache" / level_dirname(0.2) / name
            out.parent.mkdir(parents=True, exist_ok=True)
            img.save(out)
            rows.append({"file_name": name, "source": rel, "sample_index": j, "level": 0.2, "label": label})
        items.append((rel, label))
    write_manifest(root / "cache" / level_dirname(0.2), rows)
    return root, items


class FolderDigits:
    """A user's own dataset: (PIL image, label) from class folders, with .relpaths."""

    def __init__(self, root, items):
        self.root, self.items = pathlib.Path(root), items
        self.relpaths = [rel for rel, _ in items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        rel, label = self.items[i]
        with Image.open(self.root / rel) as img:
            return img.copy(), label


def _to_tensor(img):
    import torch

    return torch.from_numpy(np.asarray(img, dtype=np.float32)[None] / 127.5 - 1.0)


# --------------------------------------------------------------------------- layout


def test_layout_names_and_manifest_round_trip(tmp_path):
    assert level_dirname(0.3) == "level0.300" and level_dirname(1) == "level1.000"
    assert sample_relpath("3/0042.png", 1) == "3/0042_s001.png"
    assert sample_relpath("a.b.jpg", 12) == "a.b_s012.png"
    for bad in ("/abs/x.png", "../x.png", ""):
        with pytest.raises(ValueError, match="relative"):
            sample_relpath(bad, 0)
    with pytest.raises(ValueError, match="sample_index"):
        sample_relpath("x.png", -1)
    with pytest.raises(ValueError, match="level"):
        level_dirname(1.5)
    _synthetic_cache(tmp_path, ["a.png", "b/c.png"], levels=(0.2, 0.6), k=2)
    assert available_levels(tmp_path) == [0.2, 0.6]
    rows = read_manifest(tmp_path, 0.6)
    assert [(r["source"], r["sample_index"]) for r in rows] == [("a.png", 0), ("a.png", 1), ("b/c.png", 0), ("b/c.png", 1)]
    assert (tmp_path / "level0.600" / MANIFEST_NAME).read_text().count("\n") == 4


def test_missing_level_names_the_levels_present_and_the_command(tmp_path):
    _synthetic_cache(tmp_path, ["a.png"], levels=(0.2,), k=1)
    with pytest.raises(ValueError, match=r"no sample set for level 0.4 .*levels present: 0.2.*boomerang augment"):
        read_manifest(tmp_path, 0.4)
    with pytest.raises(ValueError, match="levels present: none"):
        SamplePicker(tmp_path / "nothing", ["a.png"], 1)


def test_malformed_manifest_line_is_named(tmp_path):
    d = tmp_path / level_dirname(0.3)
    d.mkdir()
    (d / MANIFEST_NAME).write_text('{"file_name": "a_s000.png", "source": "a.png", "sample_index": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"augment.jsonl:2: not a JSON line"):
        read_manifest(tmp_path, 0.3)


# --------------------------------------------------------------------------- the choice


def test_choice_is_a_pure_function_with_share_p_and_uniform_samples():
    picks = [choose_sample(0, 0, i, 0.5, 4) for i in range(8000)]
    assert picks == [choose_sample(0, 0, i, 0.5, 4) for i in range(8000)]
    share = sum(p is not None for p in picks) / len(picks)
    assert abs(share - 0.5) < 0.02
    counts = np.bincount([p for p in picks if p is not None], minlength=4)
    assert counts.min() > 0.2 * counts.sum()
    assert all(choose_sample(0, 0, i, 0.0, 4) is None for i in range(200))
    assert all(choose_sample(0, 0, i, 1.0, 4) is not None for i in range(200))
    assert all(choose_sample(0, 0, i, 1.0, 0) is None for i in range(20))
    other_epoch = [choose_sample(0, 1, i, 0.5, 4) for i in range(8000)]
    other_seed = [choose_sample(1, 0, i, 0.5, 4) for i in range(8000)]
    assert 0.3 < np.mean([a == b for a, b in zip(picks, other_epoch)]) < 0.5  # independent draws agree ~ 0.25 + 0.0625*2
    assert 0.3 < np.mean([a == b for a, b in zip(picks, other_seed)]) < 0.5


@pytest.mark.parametrize("kwargs, name", [
    (dict(p=1.5), "p"), (dict(p=float("nan")), "p"), (dict(p="x"), "p"), (dict(epoch=-1), "epoch"),
    (dict(index=1.0), "index"), (dict(seed=True), "seed"), (dict(num_samples=-1), "num_samples"),
])
def test_choice_rejects_bad_arguments_by_name(kwargs, name):
    args = dict(seed=0, epoch=0, index=0, p=0.5, num_samples=4) | kwargs
    with pytest.raises(ValueError, match=rf"^{name} must"):
        choose_sample(**args)


# --------------------------------------------------------------------------- the wrapper


def test_sample_label_is_its_source_label_on_real_digits(digit_cache):
    root, items = digit_cache
    base = FolderDigits(root / "in", items)
    aug = BoomerangAugmented(base, root / "cache", samples_per_image=2, p=1.0, level=0.2)
    assert len(aug) == len(base) == 20
    from PIL import Image

    for i in range(len(aug)):
        img, label = aug[i]
        path = aug.pick(i)
        assert path is not None and path.parent.name == str(items[i][1])  # the source's class folder
        assert label == items[i][1]
        with Image.open(path) as stored:
            assert np.array_equal(np.asarray(img), np.asarray(stored))
        assert not np.array_equal(np.asarray(img), np.asarray(base[i][0]))  # a sample, not the original
    # The samples are local: the reference classifier still reads the source's digit.
    import torch

    from boomerang.classifier import load_classifier

    clf = load_classifier()
    x = torch.stack([_to_tensor(aug[i][0]) for i in range(len(aug))])
    with torch.no_grad():
        pred = clf(x).argmax(1).tolist()
    assert sum(p == lbl for p, (_, lbl) in zip(pred, items)) >= 18


def test_p_zero_is_the_base_dataset_and_p_mixes_originals_and_samples(digit_cache):
    root, items = digit_cache
    base = FolderDigits(root / "in", items)
    plain = BoomerangAugmented(base, root / "cache", samples_per_image=2, p=0.0, level=0.2)
    for i in range(len(base)):
        assert np.array_equal(np.asarray(plain[i][0]), np.asarray(base[i][0])) and plain[i][1] == base[i][1]
    half = BoomerangAugmented(base, root / "cache", samples_per_image=2, p=0.5, level=0.2, seed=3)
    chosen = [half.pick(i, epoch=e) for e in range(10) for i in range(len(base))]
    assert 0.35 < np.mean([c is not None for c in chosen]) < 0.65
    for i in range(len(base)):
        expect = base[i][0] if half.pick(i) is None else half.load(half.pick(i))
        assert np.array_equal(np.asarray(half[i][0]), np.asarray(expect))


def _epochs(aug, num_workers, epochs=(0, 1, 5)):
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    # The shuffle has its own generator: DataLoader draws its workers' base seed from
    # the loader's generator, which would shift the permutation between 0 and 2 workers.
    sampler = RandomSampler(aug, generator=torch.Generator())
    loader = DataLoader(aug, batch_size=7, sampler=sampler, num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    out = []
    for e in epochs:
        aug.set_epoch(e)
        sampler.generator.manual_seed(e)
        xs, ys = zip(*loader)
        out.append((torch.cat(xs), torch.cat(ys)))
    return out


def test_two_workers_give_the_same_items_as_one(digit_cache):
    root, items = digit_cache
    base = FolderDigits(root / "in", items)
    aug = BoomerangAugmented(base, root / "cache", samples_per_image=2, p=0.5, level=0.2, transform=_to_tensor)
    one = _epochs(aug, 0)
    two = _epochs(aug, 2)  # persistent workers: the epoch reaches them through shared memory
    for (x1, y1), (x2, y2) in zip(one, two):
        assert x1.dtype == x2.dtype and x1.shape == (20, 1, 28, 28)
        assert (x1 == x2).all() and (y1 == y2).all()
    assert not (one[0][0] == one[1][0]).all()  # epochs differ


def test_items_reproduce_and_each_epoch_draws_afresh(tmp_path):
    keys = [f"{i}.png" for i in range(300)]
    _synthetic_cache(tmp_path, keys, k=4)
    a = SamplePicker(tmp_path, keys, 4, p=0.5, level=0.3, seed=1)
    b = SamplePicker(tmp_path, keys, 4, p=0.5, level=0.3, seed=1)
    first = [a.pick(i) for i in range(300)]
    assert first == [b.pick(i) for i in range(300)]
    a.set_epoch(1)
    assert a.epoch == 1 and [a.pick(i) for i in range(300)] != first
    assert [a.pick(i, epoch=0) for i in range(300)] == first
    used = {p.name for p in first if p is not None}
    assert {f"0_s00{j}.png" for j in range(4)} & used or len(used) > 50
    with pytest.raises(ValueError, match="epoch must"):
        a.set_epoch(-1)
    with pytest.raises(IndexError):
        a.pick(300)


def test_several_levels_pool_their_samples(tmp_path):
    keys = [f"{i}.png" for i in range(200)]
    _synthetic_cache(tmp_path, keys, levels=(0.2, 0.6), k=2)
    pk = SamplePicker(tmp_path, keys, 2, p=1.0, level=[0.2, 0.6])
    dirs = {pk.pick(i).parent.name for i in range(200)}
    assert dirs == {"level0.200", "level0.600"}
    with pytest.raises(ValueError, match="level values must differ"):
        SamplePicker(tmp_path, keys, 2, level=[0.2, 0.2001])


def test_missing_samples_are_an_error_or_fall_back_to_the_original(tmp_path):
    _synthetic_cache(tmp_path, ["a.png", "b.png"], k=2)
    with pytest.raises(ValueError, match=r"1 of 3 items lack their 2 samples .*first: c.png"):
        SamplePicker(tmp_path, ["a.png", "b.png", "c.png"], 2)
    with pytest.raises(ValueError, match=r"2 of 2 items lack their 3 samples"):
        SamplePicker(tmp_path, ["a.png", "b.png"], 3)
    pk = SamplePicker(tmp_path, ["a.png", "b.png", "c.png"], 2, p=1.0, missing="original")
    assert pk.lacking == ["c.png"] and pk.pick(2) is None and pk.pick(0) is not None


def test_item_shapes_dict_tuple_and_bare_image(tmp_path):
    keys = ["x/a.png", "x/b.png"]
    _synthetic_cache(tmp_path, keys, k=1, images=True)
    from PIL import Image

    orig = Image.fromarray(np.full((4, 4), 200, np.uint8))
    as_dict = [{"image": orig, "label": 7, "text": "seven"}] * 2
    aug = BoomerangAugmented(as_dict, tmp_path, samples_per_image=1, p=1.0, key=keys, transform=np.asarray)
    item = aug[1]
    assert item["label"] == 7 and item["text"] == "seven" and (item["image"] == 0).all()
    assert as_dict[1]["image"] is orig  # the base item is not modified
    as_list = [[orig, 3, "extra"]] * 2
    out = BoomerangAugmented(as_list, tmp_path, samples_per_image=1, p=1.0, key=lambda i: keys[i])[0]
    assert isinstance(out, list) and out[1:] == [3, "extra"] and np.asarray(out[0]).max() == 0
    bare = BoomerangAugmented([orig, orig], tmp_path, samples_per_image=1, p=0.0, key=keys)
    assert bare[-1] is orig
    with pytest.raises(KeyError, match="image_key"):
        BoomerangAugmented([{"img": orig}] * 2, tmp_path, samples_per_image=1, p=1.0, key=keys)[0]


def test_keys_from_imagefolder_convention_absolute_paths_and_errors(tmp_path):
    keys = ["c/a.png", "c/b.png"]
    _synthetic_cache(tmp_path / "cache", keys, k=1)

    class ImageFolderLike(list):
        root = str(tmp_path / "in")
        samples = [(str(tmp_path / "in" / k), 0) for k in keys]

    base = ImageFolderLike([(None, 0), (None, 0)])
    aug = BoomerangAugmented(base, tmp_path / "cache", samples_per_image=1, p=1.0)
    assert aug.pick(1).name == "b_s000.png"
    pk = SamplePicker(tmp_path / "cache", [tmp_path / "in" / k for k in keys], 1, root=tmp_path / "in")
    assert len(pk) == 2
    with pytest.raises(ValueError, match="pass root="):
        SamplePicker(tmp_path / "cache", ["/abs/a.png"], 1)
    with pytest.raises(ValueError, match="pass key="):
        BoomerangAugmented([1, 2], tmp_path / "cache", samples_per_image=1)
    with pytest.raises(ValueError, match="key gives 1 paths"):
        BoomerangAugmented([1, 2], tmp_path / "cache", samples_per_image=1, key=["c/a.png"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=-0.1), "^p must"), (dict(samples_per_image=0), "^samples_per_image must"),
    (dict(level=1.5), "level"), (dict(seed=-1), "^seed must"), (dict(missing="skip"), "^missing must"),
])
def test_wrapper_rejects_bad_arguments_by_name(tmp_path, kwargs, match):
    _synthetic_cache(tmp_path, ["a.png"], k=1)
    args = dict(samples_per_image=1, key=["a.png"]) | kwargs
    with pytest.raises(ValueError, match=match):
        BoomerangAugmented([0], tmp_path, **args)


def test_import_is_torch_free_until_the_wrapper_is_used():
    import subprocess
    import sys

    code = ("import sys, boomerang.augment as a; a.choose_sample(0, 0, 0, 0.5, 2); a.level_dirname(0.3); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hugging_face_datasets_pattern_from_the_docs(tmp_path):
    """docs/augment.md: SamplePicker inside with_transform, and the wrapper over a datasets.Dataset."""
    from datasets import Dataset
    from datasets import Image as HFImage
    from PIL import Image

    keys = [f"{c}/{i}.png" for c in range(2) for i in range(3)]
    for n, rel in enumerate(keys):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 100 + n, np.uint8)).save(tmp_path / "in" / rel)
    _synthetic_cache(tmp_path / "cache", keys, k=2, images=True)
    files = [str(tmp_path / "in" / k) for k in keys]
    labels = [int(k[0]) for k in keys]
    ds = Dataset.from_dict({"image": files, "label": labels, "path": keys}).cast_column("image", HFImage())
    ds = ds.add_column("idx", list(range(len(ds))))
    picker = SamplePicker(tmp_path / "cache", ds["path"], samples_per_image=2, p=0.5, level=0.3, seed=0)

    def transform(batch):
        images = []
        for i, img in zip(batch["idx"], batch["image"]):
            f = picker.pick(i)
            images.append(img if f is None else Image.open(f))
        return {"pixel_values": [np.asarray(im) for im in images], "label": batch["label"]}

    train = ds.with_transform(transform)
    for epoch in (0, 1):
        picker.set_epoch(epoch)
        for i in range(len(train)):
            row = train[i]
            f = picker.pick(i)
            want = 100 + i if f is None else int(f.name[-5])  # originals 100+n; sample j has value 10*j
            assert row["label"] == labels[i] and (row["pixel_values"] == (want if f is None else 10 * want)).all()
    aug = BoomerangAugmented(ds, tmp_path / "cache", samples_per_image=2, p=1.0, level=0.3, key=ds["path"])
    item = aug[4]
    assert item["label"] == labels[4] and item["path"] == keys[4] and np.asarray(item["image"]).max() in (0, 10)
