"""Drives the official PyTorch code (github adambielski/perturbed-seg) for official_parity.py.

Runs under a separate PyTorch environment (no JAX, no TensorFlow), started by
``benchmarks/official_parity.py`` as ``python -m benchmarks.official_driver`` from the repository
root; not meant to be called by hand. None of the official code is copied here:
``benchmarks/official_code.py`` loads it from a git directory or checkout at run time (with
stand-ins for the third-party imports the training loop never uses) and calls its
``train.train()``.

What this driver replaces around the official modules, without editing any of them:
  * the channel table: the official ``BgFgMask`` and ``Discriminator`` hard-code the reference
    widths (and a 512-d style inside every AdaIN), so their module lists are rebuilt from the
    official building blocks (``StyledConvBlock``, ``EqualConv2d``, ``ConvBlock``,
    ``StyledGenerator``) with the widths asked for; every ``forward`` stays the official one.
  * randomness: every draw the official code makes during a forward pass or an iteration of
    ``train.train()`` (latents, noise maps, style-mixing decisions and crossovers, shifts,
    contrast-jitter factors, gradient-penalty coefficients) comes from one seeded NumPy
    generator through stand-ins for ``torch``/``random`` in the official modules' namespaces,
    and is recorded in call order, so that our code can be fed the same values.
  * data, logging, checkpoints and the progress bar of ``train.train()`` (in-memory batches,
    a recording logger, no-op ``save``, a fixed iteration range): ``official_code.run_train``.

Modes (``--mode``):
  fixture    one set of seeded official weights, forward outputs at 8/16/32 px, every loss
             term and its gradients, and the state after 3 iterations: an .npz (``--out``).
  train      ``train.train()`` for ``--iterations`` iterations on real batches from an .npy
             stream (``--images``), from given initial weights; loss curves and the EMA
             generator's layers on fixed latents: an .npz (``--out``); with ``record_draws``
             in the spec also every random draw of the iterations, in call order, and with
             ``snapshots`` the generator and critic after those numbers of iterations
             (``state_snapshots``: with both Adam states and the EMA generator).
"""

import argparse
import json
import sys
import time
import types

import numpy as np

from benchmarks import official_code

# ----------------------------------------------------------------------------------- draws


class Draws:
  """Seeded random inputs for the official code, recorded per kind in the order of the calls.

  ``mixing`` is an optional script of style-mixing decisions (one bool per iteration); without
  it the decision is drawn as the official loop does (``random() < 0.9``)."""

  def __init__(self, torch, seed: int, shift_fraction: float = 0.0, jitter: float = 0.0):
    self.torch = torch
    self.rng = np.random.default_rng(seed)
    self.shift_fraction, self.jitter = shift_fraction, jitter
    self.log = {}
    self.mixing = None

  def _keep(self, kind, value):
    self.log.setdefault(kind, []).append(np.asarray(value))
    return value

  def normal(self, kind, shape):
    a = self.rng.standard_normal(shape).astype(np.float32)
    self._keep(kind, a)
    return self.torch.from_numpy(a.copy())

  def uniform(self, kind, shape):
    a = self.rng.random(shape, dtype=np.float32)
    self._keep(kind, a)
    return self.torch.from_numpy(a.copy())

  # --- stand-ins, installed into the official modules' namespaces ---

  def torch_for_stylegan(self):
    """``torch`` as stylegan.py sees it: ``randn`` only draws the per-block noise maps."""
    return _Proxy(self.torch, randn=lambda *s, **k: self.normal("noise", _shape(s)))

  def torch_for_perturber_utils(self):
    """``torch`` as perturber_utils.py sees it: ``rand`` only draws the contrast factors' u."""
    return _Proxy(self.torch, rand=lambda *s, **k: self.uniform("jitter_u", _shape(s)))

  def torch_for_train(self):
    """``torch`` as train.py sees it: ``randn(4, B, D)`` draws the four mixing latents,
    ``randn(8, D)`` the logging latents (kept out of the record), ``rand`` the GP's e."""

    def randn(*s, **k):
      shape = _shape(s)
      if len(shape) == 3:
        return self.normal("latent4", shape)
      return self.torch.randn(*shape)

    return _Proxy(self.torch, randn=randn, rand=lambda *s, **k: self.uniform("gp_eps", _shape(s)))

  def random_for_stylegan(self):
    """``random`` as stylegan.py sees it: ``sample(range(step), 1)`` draws a crossover."""

    def sample(population, k):
      population = list(population)
      assert k == 1, k
      c = int(self.rng.integers(len(population)))
      self._keep("crossover", c)
      return [population[c]]

    return types.SimpleNamespace(sample=sample)

  def random_for_train(self):
    """``random`` as train.py sees it: ``random()`` decides style mixing (``< 0.9``)."""

    def rand():
      if self.mixing is not None:
        mix = bool(self.mixing.pop(0))
      else:
        mix = bool(self.rng.random() < 0.9)
      self._keep("mixing", mix)
      return 0.0 if mix else 0.95

    return types.SimpleNamespace(random=rand, sample=None)

  def noise_sampler(self):
    """utils.NormalNoiseSampler as train.py builds it: the latents of an unmixed iteration."""
    draws = self

    class Sampler:
      def __call__(self, batch, dim):
        return draws.normal("latent", (batch, dim))

    return Sampler

  def location_noise_fn(self):
    """The shift sampler train.py's __main__ builds, fed by this generator; records the
    rounded integer shifts (x, y) the official RandomShift then applies."""

    def fn(*size, resolution, device=None):
      u = self.rng.random(_shape(size), dtype=np.float32)
      j = self.shift_fraction
      raw = self.torch.from_numpy(u.copy()) * (2 * j * resolution) - j * resolution
      self._keep("shift", self.torch.round(raw).long().numpy())
      return raw

    return fn


def _shape(args):
  if len(args) == 1 and isinstance(args[0], (tuple, list)):
    return tuple(int(a) for a in args[0])
  return tuple(int(a) for a in args)


class _Proxy(types.ModuleType):
  """A module that answers some attributes itself and forwards the rest to ``torch``."""

  def __init__(self, torch, **overrides):
    super().__init__("torch")
    self._torch, self._overrides = torch, overrides

  def __getattr__(self, name):
    if name.startswith("_"):
      raise AttributeError(name)
    if name in self._overrides:
      return self._overrides[name]
    return getattr(self._torch, name)


# ----------------------------------------------------------------------------------- models


def build_models(ref, torch, channels, style_dim, mapping_layers):
  """The official BgFgMask and Discriminator at ``channels`` (one width per 4, 8, 16, ... px)."""
  nn = torch.nn
  sg, model = ref["stylegan"], ref["model"]

  def synthesis(cls, out_dims):
    g = cls.__new__(cls)
    nn.Module.__init__(g)
    blocks = [sg.StyledConvBlock(channels[0], channels[0], 3, 1, style_dim=style_dim, initial=True)]
    blocks += [
      sg.StyledConvBlock(
        channels[i - 1], channels[i], 3, 1, style_dim=style_dim, upsample=True, fused=False
      )
      for i in range(1, len(channels))
    ]
    g.progression = nn.ModuleList(blocks)
    heads = nn.ModuleList([sg.EqualConv2d(c, int(sum(out_dims)), 1) for c in channels])
    if cls is sg.Generator:
      g.to_rgb = heads
    else:
      g.to_out, g.output_dims = heads, list(out_dims)
    g.in_size = (4, 4)
    return g

  gen = model.BgFgMask.__new__(model.BgFgMask)
  nn.Module.__init__(gen)
  gen.generator_bg = sg.StyledGenerator(
    synthesis(sg.Generator, (3,)), style_dim, mapping_layers, style_dim
  )
  gen.generator_objects = sg.StyledGenerator(
    synthesis(sg.GeneratorNOutputs, (3, 1)), style_dim, mapping_layers, style_dim
  )

  n = len(channels)
  disc = sg.Discriminator.__new__(sg.Discriminator)
  nn.Module.__init__(disc)
  # Official indexing: progression[n - 1 - i] reads resolution 4 * 2**i; the last is the 4x4 end.
  blocks = [
    sg.ConvBlock(channels[i], channels[i - 1], 3, 1, downsample=True, fused=False)
    for i in range(n - 1, 0, -1)
  ]
  blocks.append(sg.ConvBlock(channels[0] + 1, channels[0], 3, 1, 4, 0))
  disc.progression = nn.ModuleList(blocks)
  disc.from_rgb = nn.ModuleList(
    [
      nn.Sequential(sg.EqualConv2d(3, channels[i], 1), nn.LeakyReLU(0.2))
      for i in range(n - 1, -1, -1)
    ]
  )
  disc.n_layer = n
  disc.linear = sg.EqualLinear(channels[0], 1)
  return gen, disc


def named(module):
  return {k: v.detach().numpy().copy() for k, v in module.named_parameters()}


def load_named(module, arrays, torch):
  with torch.no_grad():
    for k, p in module.named_parameters():
      p.copy_(torch.from_numpy(np.asarray(arrays[k], np.float32)))


# ----------------------------------------------------------------------------------- harness


class Harness:
  """The official modules (an ``official_code.Official``), their randomness routed through
  ``Draws``."""

  def __init__(self, official, torch):
    self.official, self.torch = official, torch
    self.ref, self.commit = official.modules, official.commit

  def close(self):
    self.official.close()

  def route(self, draws: Draws):
    ref = self.ref
    self._saved = getattr(self, "_saved", None) or {
      (m, attr): getattr(ref[m], attr)
      for m, attr in (
        ("stylegan", "torch"),
        ("stylegan", "random"),
        ("perturber_utils", "torch"),
        ("train", "torch"),
        ("train", "random"),
        ("train", "NormalNoiseSampler"),
      )
    }
    ref["stylegan"].torch = draws.torch_for_stylegan()
    ref["stylegan"].random = draws.random_for_stylegan()
    ref["perturber_utils"].torch = draws.torch_for_perturber_utils()
    # perturber.py imported random_contrast_jitter by name; it reads perturber_utils' globals.
    ref["train"].torch = draws.torch_for_train()
    ref["train"].random = draws.random_for_train()
    ref["train"].NormalNoiseSampler = draws.noise_sampler()

  def unroute(self):
    for (m, attr), value in (getattr(self, "_saved", None) or {}).items():
      setattr(self.ref[m], attr, value)

  def wrapped(self, generator, draws, shift_fraction, jitter):
    """renderer.ModelWrapper(generator, perturbers, renderer) as train.py's __main__ builds."""
    shift = draws.location_noise_fn() if shift_fraction > 0 else None
    return official_code.wrap_generator(self.official, generator, shift, jitter)

  def optimizers(self, generator, disc, lr, mapping_lr_mult):
    return official_code.adam_optimizers(self.torch, generator, disc, lr, mapping_lr_mult)

  def run_train(
    self,
    args_ns,
    gen_dp,
    g_running_wrapped,
    disc_dp,
    g_opt,
    d_opt,
    mask_loss,
    loader,
    iterations,
    step,
    logger,
    code_size,
  ):
    """One call of the official ``train.train()`` for ``iterations`` iterations."""
    official_code.run_train(
      self.official,
      args_ns,
      gen_dp,
      g_running_wrapped,
      disc_dp,
      (g_opt, d_opt),
      mask_loss,
      loader,
      official_code.Progress(iterations),
      logger,
      device=self.torch.device("cpu"),
      code_size=code_size,
      step=step,
    )


def array_batches(torch, batches):
  """The given NCHW arrays as the official loader's batches, in order, cycling."""
  return official_code.Batches(
    lambda i: torch.from_numpy(np.ascontiguousarray(batches[i], np.float32)), len(batches)
  )


def stream_batches(torch, stream, count):
  """The first ``count`` batches of an .npy stream [N, B, H, W, 3] as NCHW tensors, cycling."""
  return official_code.Batches(
    lambda i: torch.from_numpy(
      np.ascontiguousarray(np.asarray(stream[i]).transpose(0, 3, 1, 2), np.float32)
    ),
    count,
  )


def train_args(init_size, batch, lr, phase, used_sample, max_size):
  return official_code.train_arguments(init_size, batch, lr, phase, used_sample, max_size)


def setup(torch, harness, a, init=None, seed=None):
  """Official models at the fixture's widths; weights from ``init`` or the official init."""
  harness.unroute()  # the official init draws from torch's own generator
  if seed is not None:
    torch.manual_seed(seed)
  gen, disc = build_models(harness.ref, torch, a["channels"], a["style_dim"], a["mapping_layers"])
  if init is not None:
    load_named(gen, {k[2:]: v for k, v in init.items() if k.startswith("g/")}, torch)
    load_named(disc, {k[2:]: v for k, v in init.items() if k.startswith("d/")}, torch)
  return gen, disc


def adam_state(optimizer, module):
  """Per-parameter Adam state by parameter name (absent: never stepped)."""
  out = {}
  for name, p in module.named_parameters():
    st = optimizer.state.get(p)
    if st:
      out[f"{name}/count"] = np.asarray(float(st["step"]), np.float32)
      out[f"{name}/mu"] = st["exp_avg"].numpy().copy()
      out[f"{name}/nu"] = st["exp_avg_sq"].numpy().copy()
  return out


def ema_model(gen, torch):
  import copy  # pylint: disable=g-import-not-at-top

  g_running = copy.deepcopy(gen)
  g_running.train(False)
  return g_running


# ----------------------------------------------------------------------------------- fixture


def fixture(h: Harness, a) -> dict:
  torch = h.torch
  out = {}
  batch, seed = a["batch"], a["seed"]
  gen, disc = setup(torch, h, a, seed=seed)
  init = {
    **{f"g/{k}": v for k, v in named(gen).items()},
    **{f"d/{k}": v for k, v in named(disc).items()},
  }
  out.update({f"init/{k}": v for k, v in init.items()})

  # --- forward: generator layers, perturbed composites, critic scores and features ----------
  draws = Draws(torch, seed + 1, a["shift"], a["jitter"])
  h.route(draws)
  wrapper = h.wrapped(gen, draws, a["shift"], a["jitter"])
  logits = []
  hook = gen.generator_objects.register_forward_hook(lambda m, i, o: logits.append(o[1]))
  cases = []
  with torch.no_grad():
    for stage in a["forward_stages"]:
      res = 4 * 2**stage
      for alpha in a["forward_alphas"]:
        for mix in (False, True):
          name = f"fwd/s{stage}_a{alpha}_m{int(mix)}"
          fb = a["forward_batch"]
          z = draws.normal("z", (fb, a["style_dim"]))
          x = [z, draws.normal("z2", (fb, a["style_dim"]))] if mix else z
          rendered, perturbed, layers = wrapper(x, step=stage, alpha=alpha)
          real = draws.uniform("real", (fb, 3, res, res)) * 2 - 1
          out[f"{name}/background"] = layers[0].numpy()
          out[f"{name}/foreground"] = layers[1][0].numpy()
          out[f"{name}/mask"] = layers[1][1].numpy()
          out[f"{name}/mask_logit"] = logits[-1].numpy()
          out[f"{name}/perturbed_background"] = perturbed[0].numpy()
          out[f"{name}/perturbed_foreground"] = perturbed[1][0].numpy()
          out[f"{name}/perturbed_mask"] = perturbed[1][1].numpy()
          out[f"{name}/composite"] = rendered.numpy()
          out[f"{name}/d_real"] = disc(real, step=stage, alpha=alpha).numpy()
          out[f"{name}/d_fake"] = disc(rendered, step=stage, alpha=alpha).numpy()
          out[f"{name}/features_real"] = disc(
            real, step=stage, alpha=alpha, features_only=1
          ).numpy()
          cases.append(dict(name=name, stage=stage, alpha=alpha, mixing=mix))
  hook.remove()
  _store_draws(out, "fwd_draws", draws)
  out["fwd_cases"] = np.asarray(json.dumps(cases))

  # --- the generator's loss terms and their gradients at the initial weights ----------------
  stage, alpha = a["loss_stage"], a["loss_alpha"]
  res = 4 * 2**stage
  draws = Draws(torch, seed + 2, a["shift"], a["jitter"])
  h.route(draws)
  wrapper = h.wrapped(gen, draws, a["shift"], a["jitter"])
  z = [draws.normal("z", (batch, a["style_dim"])), draws.normal("z2", (batch, a["style_dim"]))]
  rendered, perturbed, _ = wrapper(z, step=stage, alpha=alpha)
  shifted = perturbed[1][1]
  coverage = shifted.detach().mean(dim=(1, 2, 3)).numpy()
  # eta between the per-sample coverages, so that a batch-level L_size would differ.
  eta = float(np.round(np.median(coverage), 4))
  mask_loss = h.ref["loss"].MaskLoss(eta, a["mask_size_weight"], a["binarization_weight"])
  d_fake = disc(rendered, step=stage, alpha=alpha)
  terms = {"g_adversarial": -d_fake.mean()}
  _, parts = mask_loss(shifted)
  terms["mask_size_loss"], terms["mask_binary_loss"] = parts["min_mask_loss"], parts["bin_loss"]
  g_params = list(gen.named_parameters())
  for term, value in terms.items():
    out[f"gloss/{term}"] = np.asarray(value.item(), np.float32)
    grads = torch.autograd.grad(
      value, [p for _, p in g_params], retain_graph=True, allow_unused=True
    )
    for (pname, _), g in zip(g_params, grads):
      if g is not None:
        out[f"gloss_grad/{term}/{pname}"] = g.numpy().copy()
  out["eta_coverages"] = coverage
  out["eta"] = np.asarray(eta, np.float32)
  _store_draws(out, "gloss_draws", draws)
  gen.zero_grad(set_to_none=True)
  disc.zero_grad(set_to_none=True)

  # --- one official iteration at the loss stage: the critic's terms and their gradients -----
  gen, disc = setup(torch, h, a, init=init)
  draws = Draws(torch, seed + 3, a["shift"], a["jitter"])
  draws.mixing = [True]
  h.route(draws)
  reals = [draws.uniform("real", (batch, 3, res, res)).numpy() * 2 - 1]
  snaps = _CriticGradients(torch, disc)
  logger = official_code.MetricsLog()
  with snaps:
    _iterations(h, a, gen, disc, draws, logger, [(stage, [alpha], reals)], eta)
  for term, grads in zip(("real", "fake", "gp"), snaps.terms):
    for pname, g in grads.items():
      out[f"dloss_grad/{term}/{pname}"] = g
  for k in CRITIC_METRICS:
    out[f"dloss/{k}"] = np.asarray(logger.metrics[0][k], np.float32)
  _store_draws(out, "dloss_draws", draws)

  # --- three full iterations: 8 px, then two at 16 px in the fade-in (a late block starts) ---
  gen, disc = setup(torch, h, a, init=init)
  draws = Draws(torch, seed + 4, a["shift"], a["jitter"])
  draws.mixing = list(a["train_mixing"])
  h.route(draws)
  plan = []
  for stage, alphas in a["train_plan"]:
    res = 4 * 2**stage
    plan.append(
      (stage, alphas, [draws.uniform("real", (batch, 3, res, res)).numpy() * 2 - 1 for _ in alphas])
    )
  logger = official_code.MetricsLog()
  g_opt, d_opt, g_running = _iterations(h, a, gen, disc, draws, logger, plan, eta)
  out.update({f"train/g/{k}": v for k, v in named(gen).items()})
  out.update({f"train/d/{k}": v for k, v in named(disc).items()})
  out.update({f"train/ema/{k}": v for k, v in named(g_running).items()})
  out.update({f"train/g_opt/{k}": v for k, v in adam_state(g_opt, gen).items()})
  out.update({f"train/d_opt/{k}": v for k, v in adam_state(d_opt, disc).items()})
  out["train/metrics"] = np.asarray(json.dumps(logger.metrics))
  _store_draws(out, "train_draws", draws)
  return out


# What train.train() logs of its critic step.
CRITIC_METRICS = ("Dstep_D_x", "lossD_real", "Dstep_D_Gz", "lossD_fake", "lossD", "grad_penalty")


class _CriticGradients:
  """Records the critic's gradient of each backward() the official critic step makes (real
  term, fake term, gradient penalty), keeping each apart, and hands the optimizer their sum
  in the same order, as the accumulated .grad would be."""

  def __init__(self, torch, disc):
    self.torch, self.disc, self.terms = torch, disc, []

  def __enter__(self):
    torch, me = self.torch, self
    self._backward = torch.Tensor.backward

    def backward(tensor, *args, **kwargs):
      params = list(me.disc.named_parameters())
      before = {n: p.grad for n, p in params}
      for _, p in params:
        p.grad = None
      me._backward(tensor, *args, **kwargs)
      if params[0][1].requires_grad:
        me.terms.append({n: p.grad.numpy().copy() for n, p in params if p.grad is not None})
      for n, p in params:
        if before[n] is not None:
          p.grad = before[n] if p.grad is None else before[n] + p.grad

    torch.Tensor.backward = backward
    return self

  def __exit__(self, *exc):
    self.torch.Tensor.backward = self._backward
    return False


def _training_objects(h, a, gen, disc, draws, eta):
  """What train.py's __main__ hands train.train(): the EMA copy, the wrapped (perturbing)
  generator and critic, both Adam optimizers and the mask loss."""
  nn = h.torch.nn
  g_running = ema_model(gen, h.torch)
  gen_dp = nn.DataParallel(h.wrapped(gen, draws, a["shift"], a["jitter"]))
  g_running_wrapped = h.wrapped(g_running, draws, 0.0, 0.0)
  disc_dp = nn.DataParallel(disc)
  g_opt, d_opt = h.optimizers(gen, disc, a["lr"], a["mapping_lr_mult"])
  mask_loss = h.ref["loss"].MaskLoss(eta, a["mask_size_weight"], a["binarization_weight"])
  return g_running, gen_dp, g_running_wrapped, disc_dp, g_opt, d_opt, mask_loss


def _iterations(h, a, gen, disc, draws, logger, plan, eta):
  """Official iterations: ``plan`` is [(stage, [alpha per iteration], [real NCHW batch...])];
  consecutive calls of train.train() share the optimizers and the EMA generator."""
  torch = h.torch
  g_running, gen_dp, g_running_wrapped, disc_dp, g_opt, d_opt, mask_loss = _training_objects(
    h, a, gen, disc, draws, eta
  )
  batch = a["batch"]
  seen = []
  hook = disc.register_forward_pre_hook(
    lambda m, args, kw: seen.append(kw.get("alpha")), with_kwargs=True
  )
  for stage, alphas, reals in plan:
    res = 4 * 2**stage
    init_size = 4 * 2 ** a["train_plan"][0][0]
    # train.train() sets alpha = 1 at init_size and min(1, (used_sample + 1) / phase) above
    # it; the used_sample below gives the planned alphas (checked after the iterations).
    phase = a["phase"]
    used = 0 if res == init_size else int(round(alphas[0] * phase)) - 1
    args_ns = train_args(
      init_size, {res: batch}, {res: a["lr"]}, phase, used, max_size=4 * 2 ** plan[-1][0]
    )
    n_before = len(logger.metrics)
    h.run_train(
      args_ns,
      gen_dp,
      g_running_wrapped,
      disc_dp,
      g_opt,
      d_opt,
      mask_loss,
      array_batches(torch, reals),
      len(alphas),
      stage,
      logger,
      a["style_dim"],
    )
    assert len(logger.metrics) - n_before == len(alphas)
  hook.remove()
  # Four critic calls per iteration (real, fake, interpolates; the generator step's fake).
  used_alphas = [float(x) for x in seen[::4]]
  planned = [float(x) for _, alphas, _ in plan for x in alphas]
  assert np.allclose(used_alphas, planned), (used_alphas, planned)
  return g_opt, d_opt, g_running


def _store_draws(out, prefix, draws: Draws):
  for kind, values in draws.log.items():
    if kind == "noise" or kind == "real":
      for i, v in enumerate(values):
        out[f"{prefix}/{kind}/{i:04d}"] = v
    else:
      out[f"{prefix}/{kind}"] = np.stack([np.asarray(v) for v in values])


# ----------------------------------------------------------------------------------- train


def train(h: Harness, a) -> dict:
  """``train.train()`` on a real-batch stream, stage by stage, then the EMA generator's layers."""
  torch = h.torch
  torch.manual_seed(a["seed"])
  init = dict(np.load(a["init"]))
  gen, disc = setup(torch, h, a, init=init)
  draws = Draws(torch, a["seed"] + 100, a["shift"], a["jitter"])
  h.route(draws)
  g_running, gen_dp, g_running_wrapped, disc_dp, g_opt, d_opt, mask_loss = _training_objects(
    h, a, gen, disc, draws, a["eta"]
  )
  tm = h.ref["train"]
  if a.get("ema_rampup"):
    _ramped_accumulate(tm)
  snapshots, at, full = {}, set(a.get("snapshots", ())), set(a.get("state_snapshots", ()))

  def snapshot(n):
    if n in at or n in full:
      for tag, module in (("g", gen), ("d", disc)):
        snapshots.update({f"snap/{n}/{tag}/{k}": v for k, v in named(module).items()})
    if n in full:  # also both Adam states and the EMA generator
      snapshots.update({f"snap/{n}/ema/{k}": v for k, v in named(g_running).items()})
      for tag, opt, module in (("g_opt", g_opt, gen), ("d_opt", d_opt, disc)):
        snapshots.update({f"snap/{n}/{tag}/{k}": v for k, v in adam_state(opt, module).items()})

  logger = official_code.MetricsLog(snapshot)
  start = time.time()
  done = 0
  for st in a["stages"]:  # [{stage, iterations, fade_images, stream}]
    stream = np.load(st["images"], mmap_mode="r")
    res = 4 * 2 ** st["stage"]
    batch = stream.shape[1]
    first = st is a["stages"][0]
    args_ns = train_args(
      4 * 2 ** a["stages"][0]["stage"],
      {res: batch},
      {res: a["lr"]},
      max(st["fade_images"], 1),
      0,
      max_size=4 * 2 ** a["stages"][-1]["stage"],
    )
    if first:
      args_ns.phase = 10**12  # one stage at a time: never grow inside train()
    else:
      args_ns.phase = st["fade_images"]
    h.run_train(
      args_ns,
      gen_dp,
      g_running_wrapped,
      disc_dp,
      g_opt,
      d_opt,
      mask_loss,
      stream_batches(torch, stream, st["iterations"]),
      st["iterations"],
      st["stage"],
      logger,
      a["style_dim"],
    )
    done += st["iterations"]
    print(
      f"official: stage {st['stage']} done, {done} iterations, {time.time() - start:.0f} s",
      flush=True,
    )
  out = {"seconds": np.asarray(time.time() - start), **snapshots}
  if a.get("record_draws"):
    _store_draws(out, "train_draws", draws)  # before the sampling below adds its noise
  keys = sorted({k for m in logger.metrics for k in m})
  for k in keys:
    out[f"metrics/{k}"] = np.asarray([m.get(k, np.nan) for m in logger.metrics], np.float32)
  # The EMA generator on fixed latents, with its own noise (no perturbation, as at inference).
  z = torch.from_numpy(np.load(a["latents"]).astype(np.float32))
  stage = a["stages"][-1]["stage"]
  layers = {"background": [], "foreground": [], "mask": []}
  with torch.no_grad():
    for i in range(0, z.shape[0], 64):
      bg, (fg, mask) = g_running(z[i : i + 64], step=stage, alpha=1.0)
      layers["background"].append(bg.numpy())
      layers["foreground"].append(fg.numpy())
      layers["mask"].append(mask.numpy())
  for k, v in layers.items():
    out[f"samples/{k}"] = np.concatenate(v)
  out.update({f"ema/{k}": v for k, v in named(g_running).items()})
  return out


def _ramped_accumulate(tm):
  """The EMA rule of configs/synthetic.py (train.ema_rampup): decay min(0.999, (1 + t) /
  (10 + t)) at iteration t, applied through the official ``accumulate``."""
  original = tm.accumulate
  count = [0]

  def accumulate(model1, model2, decay=0.999):
    t = count[0]
    count[0] += 1
    return original(model1, model2, min(decay, (1.0 + t) / (10.0 + t)))

  tm.accumulate = accumulate


# ----------------------------------------------------------------------------------- main


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--mode", choices=("fixture", "train"), required=True)
  p.add_argument("--mirror", required=True, help="git directory or checkout of perturbed-seg")
  p.add_argument("--spec", required=True, help="JSON file of the run's settings")
  p.add_argument("--out", required=True)
  p.add_argument("--threads", type=int, default=2)
  args = p.parse_args()
  try:
    source = official_code.locate(args.mirror)
  except official_code.SourceError as e:
    print(f"error: --mirror: {e}", file=sys.stderr)
    sys.exit(2)
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  with open(args.spec) as f:
    a = json.load(f)
  h = Harness(official_code.Official(source), torch)
  try:
    out = fixture(h, a) if args.mode == "fixture" else train(h, a)
  finally:
    h.close()
  out["official_commit"] = np.asarray(h.commit)
  out["torch_version"] = np.asarray(torch.__version__)
  np.savez_compressed(args.out, **out)
  print(f"wrote {args.out} ({len(out)} arrays)", flush=True)


if __name__ == "__main__":
  main()
