"""An encoder bound to its frozen GAN: the model, the frozen parameters (EMA generator, critic,
mean styles), the decoding and reconstruction functions, and the optimizer. Shared by encoder
training and by inference through the ``encoder`` route.
"""

import jax
import jax.numpy as jnp
import optax

from layered_gan_jax import parallel, seeds
from layered_gan_jax.nets import encoder as encoder_lib
from layered_gan_jax.nets import generator as generator_lib
from layered_gan_jax.training import losses, states
from layered_gan_jax.training.states import NetState


class EncoderSetup:
  """Everything needed to run a trained or training encoder."""

  def __init__(self, config, gan):  # gan: a restore.LoadedGAN
    self.config, self.gan = config, gan
    self.encoder = encoder_lib.build_encoder(config, gan.generator, gan.stage)
    w_avg = generator_lib.mean_styles(
      gan.generator, gan.ema_params, jax.random.PRNGKey(config.seed + seeds.ENCODER_MEAN_STYLES)
    )
    self.frozen = parallel.put_replicated({"g": gan.ema_params, "d": gan.d_params, "w_avg": w_avg})
    self.decode = encoder_lib.make_decode_fn(
      gan, config.encoder.target, config.encoder.noise, config.seed
    )
    self.reconstruct = encoder_lib.make_reconstruct_fn(
      self.encoder, gan, config.encoder.target, config.encoder.noise, config.seed
    )
    self.tx = optax.adam(config.encoder.lr)

  def init_fn(self):
    """``init(key) -> NetState`` of the encoder."""
    r = self.gan.resolution
    return states.net_init_fn(
      lambda k: self.encoder.init(k, jnp.zeros((1, r, r, 3)))["params"], self.tx
    )

  def init_state(self) -> NetState:
    return states.init_replicated(self.init_fn(), self.config.seed + seeds.ENCODER_INIT)

  def features(self, d_params, x):
    """The critic's 4x4 features of images ``x`` (the feature term of ``L_auto``)."""
    gan = self.gan
    return gan.critic.apply(
      {"params": d_params}, x, stage=gan.stage, alpha=gan.alpha, return_features=True
    )[1]

  def predict_fn(self):
    """jitted ``(enc_params, frozen, images) -> (layers, composite)``; with
    ``encoder.refine_steps`` > 0, the encoder's prediction is refined per batch by that many
    Adam steps (``encoder.refine_lr``) on the training reconstruction loss before decoding."""
    e = self.config.encoder
    if not e.refine_steps:
      return jax.jit(self.reconstruct)
    tx = optax.adam(e.refine_lr)

    def refined(enc_params, frozen, images):
      pred = self.encoder.apply({"params": enc_params}, images)
      target = jax.lax.stop_gradient(self.features(frozen["d"], images))

      def loss_fn(p):
        _, recon = self.decode(p, frozen)
        return losses.reconstruction_loss(
          recon, images, self.features(frozen["d"], recon), target, feature_weight=e.feature_weight
        )[0]

      def body(_, carry):
        p, opt_state = carry
        updates, opt_state = tx.update(jax.grad(loss_fn)(p), opt_state, p)
        return optax.apply_updates(p, updates), opt_state

      pred, _ = jax.lax.fori_loop(0, e.refine_steps, body, (pred, tx.init(pred)))
      return self.decode(pred, frozen)

    return jax.jit(refined)
