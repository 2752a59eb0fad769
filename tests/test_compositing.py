"""The random shift, the background contrast jitter and compositing against NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layered_gan_jax.nets import compositing


def naive_shift(x, shifts):
  """Per-sample loop: ``out[y, x] = in[y - dy, x - dx]``, zero where the source is outside."""
  x = np.asarray(x)
  out = np.zeros_like(x)
  _, h, w, _ = x.shape
  for b, (dy, dx) in enumerate(np.asarray(shifts)):
    for yy in range(h):
      for xx in range(w):
        sy, sx = yy - dy, xx - dx
        if 0 <= sy < h and 0 <= sx < w:
          out[b, yy, xx] = x[b, sy, sx]
  return out


def naive_jitter(background, u, strength):
  b = np.asarray(background, np.float64)
  c = 1.0 + strength * (2.0 * np.asarray(u, np.float64).reshape(-1, 1, 1, 1) - 1.0)
  mean = b.mean(axis=(1, 2), keepdims=True)
  lo, hi = b.min(axis=(1, 2), keepdims=True), b.max(axis=(1, 2), keepdims=True)
  return np.clip((b - mean) * c + mean, lo, hi)


def _images(seed, shape):
  # Strictly positive values, so that a zero can only come from the uncovered band.
  return jnp.asarray(np.random.default_rng(seed).uniform(0.1, 1.0, shape).astype(np.float32))


def test_composite_formula():
  rng = np.random.default_rng(0)
  bg, fg = rng.standard_normal((2, 2, 5, 5, 3)).astype(np.float32)
  m = rng.uniform(size=(2, 5, 5, 1)).astype(np.float32)
  np.testing.assert_allclose(compositing.composite(bg, fg, m), (1 - m) * bg + m * fg, rtol=1e-6)
  np.testing.assert_array_equal(compositing.composite(bg, fg, np.zeros_like(m)), bg)
  np.testing.assert_array_equal(compositing.composite(bg, fg, np.ones_like(m)), fg)


def test_max_shift():
  assert compositing.max_shift(64, 0.125) == 8
  assert compositing.max_shift(128, 0.125) == 16
  assert compositing.max_shift(8, 0.125) == 1
  assert compositing.max_shift(32, 0.0) == 0


def test_shift_images_equals_naive_loop_for_every_shift():
  res, frac = 32, 0.125
  p = compositing.max_shift(res, frac)  # 4
  grid = np.array([(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)], np.int32)
  x = _images(1, (len(grid), res, res, 4))  # every (dy, dx) pair, extremes and zero included
  out = np.asarray(compositing.shift_images(x, jnp.asarray(grid), p))
  np.testing.assert_array_equal(out, naive_shift(x, grid))
  for b, (dy, dx) in enumerate(grid):
    band = np.zeros((res, res), bool)
    if dy > 0:
      band[:dy] = True
    if dy < 0:
      band[dy:] = True
    if dx > 0:
      band[:, :dx] = True
    if dx < 0:
      band[:, dx:] = True
    assert np.all(out[b][band] == 0.0), (dy, dx)  # uncovered band exactly zero
    assert np.all(out[b][~band] > 0.0), (dy, dx)  # everything else comes from the image
  zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
  np.testing.assert_array_equal(out[zero], x[zero])  # no shift, no change (not a roll artefact)


def test_shift_images_random_shifts_jit_and_vmap():
  res, frac = 16, 0.25
  p = compositing.max_shift(res, frac)  # 4
  rng = np.random.default_rng(2)
  shifts = rng.integers(-p, p + 1, size=(3, 8, 2)).astype(np.int32)
  shifts[0, 0], shifts[0, 1], shifts[0, 2] = (p, p), (-p, -p), (0, 0)
  shifts[1, 0], shifts[1, 1] = (p, -p), (-p, p)
  x = _images(3, (3, 8, res, res, 2))
  jitted = jax.jit(compositing.shift_images, static_argnums=2)
  vmapped = jax.jit(jax.vmap(functools.partial(compositing.shift_images, max_abs_shift=p)))
  out_v = np.asarray(vmapped(x, jnp.asarray(shifts)))
  for g in range(3):
    ref = naive_shift(x[g], shifts[g])
    np.testing.assert_array_equal(np.asarray(jitted(x[g], jnp.asarray(shifts[g]), p)), ref)
    np.testing.assert_array_equal(out_v[g], ref)


def test_shift_images_zero_max_is_identity():
  x = _images(4, (2, 8, 8, 3))
  np.testing.assert_array_equal(compositing.shift_images(x, jnp.zeros((2, 2), jnp.int32), 0), x)


@pytest.mark.parametrize("res,frac", [(64, 0.125), (128, 0.125), (8, 0.125), (32, 0.3)])
def test_sample_shifts_range_extremes_and_distribution(res, frac):
  m = int(round(frac * res))
  n = 40000
  s = np.asarray(compositing.sample_shifts(jax.random.PRNGKey(res), n, res, frac))
  assert s.shape == (n, 2) and s.dtype == np.int32
  assert s.min() >= -m and s.max() <= m
  for axis in range(2):
    values, counts = np.unique(s[:, axis], return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-m, m + 1))  # both extremes, every integer
    freq = counts / n
    if float(frac * res) == m:
      # u uniform: interior integers have probability 1/(2m), the two extremes 1/(4m) each.
      expected = np.full(2 * m + 1, 1.0 / (2 * m))
      expected[0] = expected[-1] = 1.0 / (4 * m)
      sigma = np.sqrt(expected * (1 - expected) / n)
      assert np.all(np.abs(freq - expected) < 6 * sigma + 1e-12), (freq, expected)
    assert abs(s[:, axis].mean()) < 6 * s[:, axis].std() / np.sqrt(n)
  # x and y are drawn independently.
  corr = np.corrcoef(s[:, 0], s[:, 1])[0, 1]
  assert abs(corr) < 6 / np.sqrt(n)
  # Another key gives other shifts.
  s2 = np.asarray(compositing.sample_shifts(jax.random.PRNGKey(res + 1), n, res, frac))
  assert not np.array_equal(s, s2)


def test_contrast_jitter_equals_numpy_and_stays_in_channel_range():
  key = jax.random.PRNGKey(7)
  bg = jnp.asarray(np.random.default_rng(5).standard_normal((16, 8, 8, 3)).astype(np.float32))
  strength = 0.3
  factors = compositing.contrast_factors(key, bg.shape[0], strength)
  out = np.asarray(compositing.contrast_jitter(bg, factors))
  u = jax.random.uniform(key, (bg.shape[0], 1, 1, 1))  # the same u, from the same key
  np.testing.assert_allclose(factors, 1 + strength * (2 * u - 1), rtol=1e-6)
  np.testing.assert_allclose(out, naive_jitter(bg, u, strength), rtol=1e-5, atol=1e-5)
  b = np.asarray(bg)
  lo, hi = b.min(axis=(1, 2), keepdims=True), b.max(axis=(1, 2), keepdims=True)
  assert np.all(out >= lo) and np.all(out <= hi)
  c = 1 + strength * (2 * np.asarray(u).ravel() - 1)
  assert c.min() >= 0.7 and c.max() <= 1.3 and np.ptp(c) > 0.1  # per sample, not constant


def test_contrast_jitter_gradients_flow():
  key = jax.random.PRNGKey(8)
  bg = jnp.asarray(np.random.default_rng(6).standard_normal((4, 6, 6, 3)).astype(np.float32))
  weights = jnp.asarray(np.random.default_rng(7).standard_normal(bg.shape).astype(np.float32))
  factors = compositing.contrast_factors(key, bg.shape[0], 0.3)
  grad = jax.jit(jax.grad(lambda b: jnp.sum(compositing.contrast_jitter(b, factors) * weights)))
  g = np.asarray(grad(bg))
  assert np.all(np.isfinite(g))
  assert np.abs(g).max() > 0 and np.count_nonzero(g) > g.size // 2
  # Directional derivative against a central difference, in float64 with h = 1e-6 so that no
  # kink of the clip (or of min / max) is crossed; relative tolerance 1e-6.
  with jax.enable_x64(True):
    b64 = jnp.asarray(np.asarray(bg), jnp.float64)
    w64 = jnp.asarray(np.asarray(weights), jnp.float64)
    f64 = jnp.asarray(np.asarray(factors), jnp.float64)
    f = lambda b: jnp.sum(compositing.contrast_jitter(b, f64) * w64)
    v = jnp.asarray(np.random.default_rng(9).standard_normal(bg.shape))
    h = 1e-6
    fd_and_grad = jax.jit(
      lambda b: ((f(b + h * v) - f(b - h * v)) / (2 * h), jnp.sum(jax.grad(f)(b) * v))
    )
    fd, analytic = map(float, fd_and_grad(b64))
  assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_perturb_shares_the_shift_between_foreground_and_mask():
  res, frac, batch = 16, 0.25, 64
  rng = np.random.default_rng(10)
  layers = {
    "background": jnp.asarray(rng.standard_normal((batch, res, res, 3)).astype(np.float32)),
    "foreground": _images(11, (batch, res, res, 3)),
    "mask": _images(12, (batch, res, res, 1)),
  }
  key = jax.random.key(13, impl="rbg")  # any key implementation; rbg compiles faster on CPU
  run = jax.jit(functools.partial(compositing.perturb, shift_fraction=frac, bg_contrast_jitter=0.3))
  out, shifts = run(key, layers)
  shifts = np.asarray(shifts)
  m = compositing.max_shift(res, frac)
  assert shifts.shape == (batch, 2) and np.abs(shifts).max() <= m
  assert len({tuple(s) for s in shifts}) > 10  # per-sample shifts
  np.testing.assert_array_equal(out["foreground"], naive_shift(layers["foreground"], shifts))
  np.testing.assert_array_equal(out["mask"], naive_shift(layers["mask"], shifts))
  # The background is not shifted, only jittered (with the second half of the key).
  jitter_key = jax.random.split(key)[1]
  np.testing.assert_allclose(
    out["background"],
    compositing.contrast_jitter(
      layers["background"], compositing.contrast_factors(jitter_key, batch, 0.3)
    ),
    rtol=1e-6,
    atol=1e-6,
  )
  # Without jitter the background passes through untouched; the shifts depend on the key only.
  out2, shifts2 = compositing.perturb(key, layers, shift_fraction=frac, bg_contrast_jitter=0.0)
  np.testing.assert_array_equal(out2["background"], layers["background"])
  np.testing.assert_array_equal(shifts2, shifts)
