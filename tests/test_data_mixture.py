"""Several data sources in one run (issue 28): the weighted mix of the training stream (shares,
determinism, resumption, the processes' rows, the source labels), evaluation per source, the
synthetic dataset's categories and the refusals of bad sources. Streams of a few small images:
no model is built."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import default
from layered_gan_jax import errors
from layered_gan_jax.checks import validate
from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import eval_input, mixture, synthetic, train_input, transforms
from layered_gan_jax.errors import DataError
from layered_gan_jax.evaluation import evaluate


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A folder of 7 small images of several sizes."""
  root = tmp_path_factory.mktemp("mix_folder")
  rng = np.random.default_rng(0)
  for i in range(7):
    size = (10 + i, 12)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(root / f"{i}.png")
  return str(root)


def _mix(folder, weights=(0.5, 0.3, 0.2), **kw):
  """Three sources of different kinds: two synthetic categories and a folder."""
  kinds = (("synthetic", "round"), ("synthetic", "angular"), ("folder", folder))
  sources = tuple(kind + (w,) for kind, w in zip(kinds, weights))
  return dict(
    dict(name="synthetic", sources=sources, num_train_examples=9, num_workers=1, prefetch=1), **kw
  )


def _iterator(cfg, seed=0, start=0, pi=0, pc=1, b=8):
  return train_input.train_iterator(
    cfg,
    resolution=8,
    batch_size=b,
    seed=seed,
    start_index=start,
    process_index=pi,
    process_count=pc,
  )


def _take(it, n):
  out = [next(it) for _ in range(n)]
  it.close()
  return out


def test_block_counts_split_by_the_weights():
  np.testing.assert_array_equal(mixture.block_counts([0.5, 0.5]), [512, 512])
  np.testing.assert_array_equal(mixture.block_counts([2, 1], block=10), [7, 3])
  counts = mixture.block_counts([0.5, 0.3, 0.2])
  assert counts.sum() == mixture.BLOCK
  assert np.all(np.abs(counts - mixture.BLOCK * np.array([0.5, 0.3, 0.2])) < 1)
  with pytest.raises(ValueError):
    mixture.block_counts([1.0, 0.0])


@pytest.mark.parametrize("weights", [(0.5, 0.3, 0.2), (3.0, 1.0)])
def test_shares_of_10000_images_are_the_weights(folder, weights):
  """Each source's share of 10,000 drawn images (from batch 37 on: not aligned with the blocks)
  is its weight within 1 %, for several seeds."""
  want = np.array(weights) / np.sum(weights)
  for seed in (0, 7):
    it = _iterator(_mix(folder, weights), seed=seed, start=37, b=100)
    drawn = np.concatenate([it.batch_sources(37 + k) for k in range(100)])
    it.close()
    shares = np.bincount(drawn, minlength=len(weights)) / len(drawn)
    assert len(drawn) == 10_000 and np.all(np.abs(shares - want) < 0.01), (seed, shares)


def test_same_seed_same_images_other_seed_others(folder):
  a = _take(_iterator(_mix(folder)), 3)
  b = _take(_iterator(_mix(folder)), 3)
  c = _take(_iterator(_mix(folder), seed=1), 3)
  for x, y in zip(a, b):
    assert x["image"].shape == (8, 8, 8, 3) and x["source"].dtype == np.int32
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["source"], y["source"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  sources = [np.concatenate([x["source"] for x in run]) for run in (a, c)]
  assert not np.array_equal(*sources)  # The mix's order depends on the seed too.


def test_ranks_count_the_earlier_positions_of_each_source():
  """Position t takes position (number of earlier positions of its source) of that source's
  stream, across blocks: so each source's stream is read in order, with nothing left out."""
  labels, ranks = mixture.Mixture([0.5, 0.3, 0.2], seed=3).locate(np.arange(3 * mixture.BLOCK))
  for j in range(3):
    np.testing.assert_array_equal(ranks[labels == j], np.arange(np.sum(labels == j)))


def test_resumed_stream_equals_the_uninterrupted_one(folder):
  """9 examples a source: epochs of every source straddle batches; 100-image batches: the
  resumed run starts in the second block of the mix."""
  full = _take(_iterator(_mix(folder), b=100), 13)
  it = _iterator(_mix(folder), start=11, b=100)
  resumed = _take(it, 2)
  assert it.batches_consumed == 13
  for x, y in zip(full[11:], resumed):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["source"], y["source"])


def test_two_processes_read_disjoint_rows_whose_union_is_the_batch(folder):
  """Global batches 126..129 of 8 images: positions 1008..1039, across a block boundary."""
  cfg, ks = _mix(folder), range(126, 130)
  single = _iterator(cfg, b=8, start=126)
  want_idx = [single.batch_indices(k) for k in ks]
  want_off = [single.crop_offsets_of_batch(k) for k in ks]
  want = _take(single, len(ks))
  its = [_iterator(cfg, b=4, pi=p, pc=2, start=126) for p in range(2)]
  for i, k in enumerate(ks):
    # (source, epoch, example) of each row: no row of global batch k is read by both.
    rows = [set(zip(*it._maker.plan(k))) for it in its]  # pylint: disable=protected-access
    assert len(rows[0]) == len(rows[1]) == 4 and not rows[0] & rows[1]
    np.testing.assert_array_equal(np.concatenate([it.batch_indices(k) for it in its]), want_idx[i])
    np.testing.assert_array_equal(
      np.concatenate([it.crop_offsets_of_batch(k) for it in its]), want_off[i]
    )
  got = [_take(it, len(ks)) for it in its]
  for i in range(len(ks)):
    for key in ("image", "source"):
      np.testing.assert_array_equal(np.concatenate([g[i][key] for g in got]), want[i][key])


def test_each_image_is_what_its_source_yields(folder):
  """The rows labelled j, in order, are source j's own stream: that of a one-source iterator
  on source j with the source's seed, read, resized and cropped as if it were alone (1,100
  images: across the first two blocks of the mix)."""
  cfg, seed = _mix(folder), 5
  batches = _take(_iterator(cfg, seed=seed, b=100), 11)
  images = np.concatenate([b["image"] for b in batches])
  labels = np.concatenate([b["source"] for b in batches])
  specs = data_config.data_sources(cfg)
  assert [s.label for s in specs] == ["round", "angular", folder.rstrip("/").split("/")[-1]]
  assert set(labels) == {0, 1, 2}
  for j, spec in enumerate(specs):
    alone = _iterator(spec.cfg, seed=mixture.source_seed(seed, j), b=int(np.sum(labels == j)))
    np.testing.assert_array_equal(images[labels == j], _take(alone, 1)[0]["image"])
  # And the first synthetic row by hand: the category's own scene, resized, cropped.
  it = _iterator(cfg, seed=seed, b=100)
  r = int(np.flatnonzero(it.batch_sources(0) < 2)[0])
  j, g, off = it.batch_sources(0)[r], it.batch_indices(0)[r], it.crop_offsets_of_batch(0)[r]
  it.close()
  layout = synthetic.CATEGORIES[specs[j].label]
  scene, _ = synthetic.render_example("train", int(g), 16, layout=layout)
  want = transforms.resize_square(scene, transforms.crop_size(8))[
    off[0] : off[0] + 8, off[1] : off[1] + 8
  ]
  np.testing.assert_array_equal(batches[0]["image"][r], transforms.to_float(want))


def test_categories_differ_in_shape_family_and_have_their_own_scenes():
  # pylint: disable=protected-access
  for name, kinds in (("round", {"ellipse", "blob"}), ("angular", {"polygon", "star"})):
    cumulative = synthetic._cumulative(synthetic.CATEGORIES[name].shapes)
    rng = np.random.default_rng(0)
    drawn = {synthetic._Shape(rng, cumulative).kind for _ in range(40)}
    assert drawn == kinds, name
  own = synthetic.render_example("test", 3, 16)[0]
  for split in ("train", "test"):
    a, b = (
      synthetic.render_example(split, 3, 16, layout=synthetic.CATEGORIES[c])[0]
      for c in ("round", "angular")
    )
    assert not np.array_equal(a, b) and not np.array_equal(a, own)


def test_eval_sources_are_labelled_and_each_their_own_split():
  cfg = dict(
    name="synthetic", num_workers=1, sources=(("synthetic", "round"), ("synthetic", "angular"))
  )
  it = eval_input.eval_dataset(cfg, resolution=16, batch_size=4, max_examples=3)
  assert it.source_names == ["round", "angular"] and it.source_sizes == [3, 3]
  batches = list(it)
  source = np.concatenate([b["source"] for b in batches])
  np.testing.assert_array_equal(source, [0, 0, 0, 1, 1, 1, -1, -1])
  masks = np.concatenate([b["mask"] for b in batches])
  for j, name in enumerate(("round", "angular")):
    want = synthetic.generate("test", 0, 3, 16, layout=synthetic.CATEGORIES[name])["mask"]
    np.testing.assert_array_equal(masks[3 * j : 3 * j + 3], want)


def test_per_source_metrics_score_each_source_alone():
  gt = np.zeros((4, 4, 4), np.float32)
  gt[:, :2] = 1.0
  perfect, empty = gt.copy(), np.zeros_like(gt)
  # The route is right on source 0 (rows 0, 2), wrong on source 1; the baseline the reverse.
  route = np.stack([perfect[0], empty[1], perfect[2], empty[3]])
  base = np.stack([empty[0], perfect[1], empty[2], perfect[3]]) > 0.5
  out = evaluate.per_source_metrics(
    {"distilled": route}, {"full_image": base}, gt, np.array([0, 1, 0, 1]), ["cars", "horses"]
  )
  assert out["cars"]["num_images"] == out["horses"]["num_images"] == 2
  assert out["cars"]["routes"]["distilled"]["fg_iou"] == 1.0
  assert out["horses"]["routes"]["distilled"]["fg_iou"] == 0.0
  assert out["cars"]["baselines"]["full_image"]["fg_iou"] == 0.0
  assert out["horses"]["baselines"]["full_image"]["fg_iou"] == 1.0
  overall = evaluate.score_masks(route, gt)["fg_iou"]
  assert overall == 0.5


def _config(sources):
  config = default.get_config()
  with config.ignore_type():
    config.data.sources = sources
  return config


@pytest.mark.parametrize(
  "sources,needle",
  [
    (
      (("synthetic", "round", 0.5), ("imagenet", "", 0.5)),
      "data.sources[1]: unknown source kind 'imagenet'",
    ),
    (
      (("synthetic", "round", 0.5), ("synthetic", "angular", 0.0)),
      "data.sources[1]: the weight 0.0 of 'synthetic' must be a number > 0",
    ),
    ((("synthetic", "round", -1),), "data.sources[0]: the weight -1"),
    (
      (("synthetic", "oval", 1.0),),
      "data.sources[0] (oval): the synthetic dataset has no category 'oval'",
    ),
    ((("synthetic", "round"), "folder"), "data.sources[1]='folder' must be (name, path)"),
  ],
)
def test_bad_sources_refused_in_one_line(sources, needle):
  with pytest.raises(errors.ConfigError) as e:
    validate.validate_config(_config(sources), "train")
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_paths_refused_in_one_line(tmp_path):
  for kind, needle in (("folder", "no such folder"), ("lsun_lmdb", "no lmdb database there")):
    config = _config((("synthetic", "round", 0.5), (kind, str(tmp_path / "nope"), 0.5)))
    with pytest.raises(DataError) as e:
      validate.validate_config(config, "train")
    assert f"data.sources[1] (nope): {tmp_path}/nope: {needle}" in str(e.value)
    assert "\n" not in str(e.value)
  # Evaluation sources must have masks: LSUN's databases have none.
  config = _config((("synthetic", "round", 0.5), ("synthetic", "angular", 0.5)))
  config.eval.data.sources = (("synthetic", "round"), ("lsun/car", ""))
  with pytest.raises(DataError, match=r"eval.data.sources\[1\] \(lsun/car\): 'lsun/car' has no"):
    validate.validate_config(config, "evaluate")


def test_two_category_config_validates_and_evaluates_per_category():
  from configs import synthetic_two  # pylint: disable=g-import-not-at-top

  config = synthetic_two.get_config()
  validate.validate_config(config, "pipeline")
  data = data_config.eval_data_config(config)
  assert [s.label for s in data_config.data_sources(data)] == ["round", "angular"]
  assert [s.weight for s in data_config.data_sources(config.data)] == [0.5, 0.5]
  single = ml_collections.ConfigDict(config.to_dict())
  single.eval.data.name = "synthetic"
  assert not data_config.eval_data_config(single).sources  # One named set: no sources.
