"""What every training method shares: the train state, networks, optimizers, EMA and inputs.

A method builds its family's networks and defines one pure update,
``step(state, batch) -> (state, metrics)``, written for the global batch. It never loops and never
places data: the launcher (``genjax.parallel``) jits or pmaps it. Under pmap ``self.axis_name`` is
set and gradients/metrics are averaged with ``parallel.pmean``; under jit that is a no-op.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from genjax import data
from genjax import kernels
from genjax import models
from genjax import parallel
from genjax.errors import ConfigError
from genjax.models import layers

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly; one pytree, saved whole by checkpoints.

  Attributes:
    step: int32 scalar, updates done so far.
    rng: uint32[2] base key; the key of update ``s`` is ``fold_in(rng, s)``.
    params: trainable parameters per network role (``nnx.State``).
    buffers: the other variables per role: BatchNorm statistics, power-iteration vectors, ...
    opt_state: optax state per role.
    ema: EMA parameters per role (the sampling network's when ``config.ema_decay > 0``; methods
      may keep others, see ``Method.ema_decay``).
    extra: the method's own state, e.g. CycleGAN's pools of past fakes (``Method.init_extra``);
      checkpointed and resumed with the rest.
  """
  step: Array
  rng: Array
  params: dict[str, Any]
  buffers: dict[str, Any]
  opt_state: dict[str, Any]
  ema: dict[str, Any]
  extra: dict[str, Any] = flax.struct.field(default_factory=dict)


def make_schedule(opt, num_steps: int, learning_rate: float) -> optax.Schedule:
  if opt.schedule == "constant":
    main = optax.constant_schedule(learning_rate)
  elif opt.schedule == "cosine":
    main = optax.cosine_decay_schedule(learning_rate, max(1, num_steps - opt.warmup_steps))
  elif opt.schedule == "hold_linear":  # pix2pix/CycleGAN: constant, then linearly to 0
    hold = opt.hold_steps - opt.warmup_steps
    main = optax.join_schedules(
        [optax.constant_schedule(learning_rate),
         optax.linear_schedule(learning_rate, 0.0, max(1, num_steps - opt.hold_steps))], [hold])
  elif opt.schedule == "step":  # torch's MultiStepLR with one milestone: 10x lower from hold_steps
    main = optax.piecewise_constant_schedule(
        learning_rate, {opt.hold_steps - opt.warmup_steps: 0.1})
  elif opt.schedule == "burda":  # Burda et al. 2016: stage i (0..7) of 3^i hold_steps, x10^(-i/7)
    main = optax.piecewise_constant_schedule(
        learning_rate, {opt.hold_steps * (3 ** i - 1) // 2: 10 ** (-1 / 7) for i in range(1, 8)})
  else:  # linear decay to 0 right after the warm-up
    main = optax.linear_schedule(learning_rate, 0.0, max(1, num_steps - opt.warmup_steps))
  if opt.warmup_steps:
    warm = optax.linear_schedule(0.0, learning_rate, opt.warmup_steps)
    return optax.join_schedules([warm, main], [opt.warmup_steps])
  return main


def make_optimizer(opt, schedule: optax.Schedule) -> optax.GradientTransformation:
  if opt.name == "adam":
    tx = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    if opt.weight_decay:  # torch.optim.Adam's weight_decay: an L2 term in the gradient
      tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
  elif opt.name == "adamw":
    tx = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  elif opt.name == "rmsprop":  # WGAN's optimizer; b2 is the squared-gradient decay
    # torch.optim.RMSprop's update, g / (sqrt(v) + eps): optax's default puts eps inside the
    # root, which shrinks the steps of weights whose gradients are ~1e-4 (WGAN's clipped critic)
    tx = optax.rmsprop(schedule, decay=opt.b2, eps=opt.eps, eps_in_sqrt=False)
  else:
    tx = optax.sgd(schedule, momentum=opt.b1 or None)
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  return tx


@dataclasses.dataclass(frozen=True)
class FrozenSlot:
  """A network a method uses without optimising it (``Method.FROZEN``), named by the config
  as ``config.frozen.<slot>``: a genjax run ``RUN[@STEP][#ROLE]``, a ``genjax.cli.export`` ``.npz``
  or a reference ``.pth`` (:mod:`genjax.frozen`), loaded once at start-up.

  Attributes:
    what: what the network is for, in words (start-up errors name it).
    families: the genjax model families a run or export may be of (empty: any).
    build: ``build(method) -> nnx.Module``, the architecture a ``.pth`` is read into; None
      where the slot takes no ``.pth``.
  """
  what: str
  families: tuple[str, ...] = ()
  build: Callable[[Any], nnx.Module] | None = None


def grid_shape(n: int) -> tuple[int, int]:
  """``(rows, cols)`` of a near-square sample grid of at most ``n`` images (one row below 4)."""
  cols = int(n ** 0.5) if n >= 4 else n
  return max(1, n // cols), cols


def inference(module: nnx.Module) -> nnx.Module:
  """A view of ``module`` in inference mode: BatchNorm normalises with its running statistics and
  spectral normalisation uses its stored power-iteration vector (no-op without either)."""
  stateful = any(hasattr(m, "use_running_average") for _, m in nnx.iter_graph(module))
  return nnx.view(module, use_running_average=True) if stateful else module


class Method:
  """Base class. Subclasses set DEFAULTS (their ``config.method`` keys), KEYS, SAMPLE_NET, and
  define ``step`` and ``sample_grids``; FROZEN where they use frozen networks."""

  DEFAULTS: dict[str, Any] = {}
  KEYS: tuple[str, ...] = ("image",)  # the example keys a step reads (the dataset must have them)
  SAMPLE_NET = "model"  # the role whose EMA is kept and which draws samples
  FROZEN: dict[str, FrozenSlot] = {}  # the frozen networks it accepts: ``config.frozen`` keys

  @classmethod
  def validate(cls, config) -> None:
    """Method-specific checks; raise ConfigError."""

  @classmethod
  def required_frozen(cls, config) -> tuple[str, ...]:
    """The FROZEN slots ``config`` must name (e.g. a loss term that is switched on)."""
    del config
    return ()

  def __init__(self, config, image_shape: tuple[int, int, int], num_classes: int,
               axis_name: str | None = None, conv_backend: kernels.ConvBackend = kernels.XLA):
    self.config = config
    self.mc = config.method
    self.image_shape = image_shape
    self.num_classes = num_classes
    self.axis_name = axis_name
    # The kernels of every convolution of its networks (a field of their conv layers, so of
    # their graph definitions): config.conv_backend as the launcher resolved it.
    self.conv_backend = conv_backend
    self.value_range = tuple(float(v) for v in config.dataset.value_range)
    self.family = family = models.get(config.model.name)
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else None
    # axis_name=None builds networks that can run outside pmap (e.g. to probe their outputs).
    self._build = lambda rngs, axis_name=axis_name: {
        role: layers.on_conv_backend(net, conv_backend) for role, net in family.build(
            image_shape, rngs=rngs, axis_name=axis_name, dtype=dtype, **self.build_kwargs(),
            **kwargs).items()}
    try:
      abstract = nnx.eval_shape(lambda: self._build(nnx.Rngs(0)))
    except ValueError as e:  # e.g. an image size the architecture cannot produce
      raise ConfigError(f"model {config.model.name!r} cannot be built for images of shape "
                        f"{image_shape}: {e}") from None
    self.abstract_nets = abstract  # shapes only: what each network is, for methods to inspect
    self.graphdefs = {role: nnx.split(net, nnx.Param, ...)[0] for role, net in abstract.items()}
    self.schedules = {role: make_schedule(config.optimizer, config.num_steps,
                                          self.learning_rate(role)) for role in self.graphdefs}
    self.tx = {role: make_optimizer(config.optimizer, self.schedules[role])
               for role in self.graphdefs}
    self.frozen: dict[str, Any] = {}  # slot -> genjax.frozen.Network, once attached
    self.frozen_weights: dict[str, Any] = {}  # slot -> host copy of its weights, once attached
    self._frozen_graphdefs: dict[str, Any] = {}

  def attach_frozen(self, networks: dict[str, Any]) -> dict[str, Any]:
    """Keeps the frozen networks (``genjax.frozen.Network`` per slot, loaded by the launcher)
    and returns their weights, ``{slot: nnx.State}``: the step's ``frozen`` argument.

    The weights are an argument of the step, not part of the train state, and never closed over:
    as an argument they are not constants of the compiled program (a feature network's weights
    would be folded into it), the launcher places them like the state (replicated), and the
    step can neither differentiate, update nor return them, so they stay bit-identical and are
    never in a checkpoint (which holds the train state only).
    """
    self.check_frozen(networks)
    self.frozen = dict(networks)
    weights = {}
    for slot, network in self.frozen.items():
      self._frozen_graphdefs[slot], weights[slot] = nnx.split(network.module)
    # host copies: the launcher places them on its devices (and processes), as it does the state
    self.frozen_weights = jax.device_get(weights)
    return self.frozen_weights

  def check_frozen(self, networks: dict[str, Any]) -> None:
    """Raises ConfigError if a loaded frozen network does not fit this run (at start-up, where
    the slot's family is already checked), beyond what FrozenSlot states; none by default."""

  def frozen_net(self, slot: str, frozen: dict[str, Any]) -> nnx.Module:
    """Frozen network ``slot`` (in the mode it was loaded in) with its weights from the step's
    ``frozen`` argument."""
    if slot not in self._frozen_graphdefs:
      raise ConfigError(f"the frozen network config.frozen.{slot} is not loaded: the launcher "
                        f"attaches it (Method.attach_frozen) before the step runs")
    return nnx.merge(self._frozen_graphdefs[slot], frozen[slot])

  def build_kwargs(self) -> dict[str, Any]:
    """Arguments the method gives its family's ``build`` besides the image shape and the
    config's model keys (e.g. the translation method's ``input_shape``)."""
    return {}

  # --- state --------------------------------------------------------------------------------

  def learning_rate(self, role: str) -> float:
    """Peak learning rate of network ``role`` (methods override for per-network rates)."""
    del role
    return self.config.optimizer.learning_rate

  def init(self, rng: Array) -> TrainState:
    init_key, state_key = jax.random.split(rng)
    nets = self._build(nnx.Rngs(params=init_key))
    params, buffers = {}, {}
    for role, net in nets.items():
      _, params[role], buffers[role] = nnx.split(net, nnx.Param, ...)
    # A copy: the state is donated to the step, and one buffer must not be donated twice.
    ema = {role: jax.tree.map(jnp.copy, params[role]) for role in params
           if self.ema_decay(role)}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=state_key, params=params,
                      buffers=buffers,
                      opt_state={r: self.tx[r].init(p) for r, p in params.items()}, ema=ema,
                      extra=self.init_extra())

  def init_extra(self) -> dict[str, Any]:
    """The method's own initial state (``TrainState.extra``); none by default."""
    return {}

  def prepare(self, state: TrainState, examples: dict[str, Any]) -> TrainState:
    """A data-dependent start: ``state`` (initialised, with ``config.init.from_run``'s weights
    where given) completed from the training ``examples``, once, when a run starts (never on
    resume: what it sets belongs in the state). Nothing by default; Deep SVDD sets its
    centre."""
    del examples
    return state

  def ema_decay(self, role: str) -> float:
    """Decay of the EMA kept of network ``role``'s parameters (0: none). By default only the
    sampling network's, with ``config.ema_decay``; methods override for others."""
    return self.config.ema_decay if role == self.SAMPLE_NET else 0.0

  def net(self, role: str, params, buffers, *, train: bool = True) -> nnx.Module:
    module = nnx.merge(self.graphdefs[role], params, buffers, copy=True)
    return module if train else inference(module)

  def sampler_net(self, state: TrainState) -> nnx.Module:
    """The sampling network in inference mode, with EMA weights where kept."""
    role = self.SAMPLE_NET
    params = state.ema.get(role, state.params[role])
    return self.net(role, params, state.buffers[role], train=False)

  @staticmethod
  def buffers_of(module: nnx.Module):
    return nnx.split(module, nnx.Param, ...)[2]

  def step_key(self, state: TrainState) -> Array:
    return jax.random.fold_in(state.rng, state.step)

  def update(self, state: TrainState, role: str, grads, params=None, opt_state=None):
    """One optimizer update of network ``role``: (new params, new optimizer state).

    Gradients are averaged over the pmap axis first (under jit they are already global).
    """
    grads = parallel.pmean(grads, self.axis_name)
    params = state.params[role] if params is None else params
    opt_state = state.opt_state[role] if opt_state is None else opt_state
    updates, opt_state = self.tx[role].update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def finish(self, state: TrainState, params, buffers, opt_state, metrics,
             extra: dict[str, Any] | None = None) -> tuple[TrainState, dict]:
    """Advances the step, updates the EMA and averages the metrics over devices."""
    ema = state.ema
    if ema:
      ema = {r: jax.tree.map(lambda e, p, d=self.ema_decay(r): d * e + (1.0 - d) * p, e_,
                             params[r])
             for r, e_ in ema.items()}
    state = state.replace(step=state.step + 1, params=params, buffers=buffers,
                          opt_state=opt_state, ema=ema,
                          extra=state.extra if extra is None else extra)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    return state, parallel.pmean(metrics, self.axis_name)

  # --- inputs -------------------------------------------------------------------------------

  def images(self, images_uint8: Array) -> Array:
    """uint8 NHWC -> float32 in ``dataset.value_range`` at the model's size, normalised as
    ``dataset.normalize`` says."""
    ds = self.config.dataset
    x = data.to_float(images_uint8, value_range=self.value_range,
                      image_size=self.image_shape[:2], resize=ds.resize)
    if ds.normalize == "gcn_l1":
      x = data.gcn_minmax(x, self.gcn_extremes, self.value_range)
    return x

  @functools.cached_property
  def gcn_extremes(self) -> tuple[float, float]:
    """The training examples' extremes after global contrast normalisation (``gcn_l1``, at
    the native size, where it is invariant to the value scaling): read from the data, on the
    host, the first time a step or an evaluation is traced; a pure function of the dataset
    and its classes, so that a resumed or restored run finds the same constants."""
    return data.gcn_extremes(data.load_config(self.config.dataset)["image"])

  # --- interface ----------------------------------------------------------------------------

  # A method with frozen networks attached is given their weights (what :meth:`attach_frozen`
  # returned, placed like the state) as one more argument, ``frozen``, after the others, by
  # every caller of ``step``, ``sample_grids`` and the evaluation hooks below; none is passed
  # where none is attached. Hooks that do not use them take and ignore ``frozen=None``.

  def step(self, state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict]:
    """One update (with ``frozen`` as a third argument where frozen networks are attached)."""
    raise NotImplementedError

  # What genjax.evaluation scores: ``eval_generate(state, eval_inputs(rng, n, condition))``
  # gives ``n`` images in ``value_range``, compared with the evaluation split's images of the
  # dataset's target key (``image``, or ``B``); ``condition`` holds the split's examples of the
  # keys EVAL_CONDITION names (e.g. ``image`` to score reconstructions, ``A`` to score
  # translations), None where it names none.
  EVAL_CONDITION: tuple[str, ...] = ()

  def eval_inputs(self, rng: Array, n: int, condition: dict[str, Array] | None):
    raise NotImplementedError(f"{type(self).__name__} has no sample-quality evaluation")

  def eval_generate(self, state: TrainState, inputs: Array, frozen=None) -> Array:
    raise NotImplementedError(f"{type(self).__name__} has no sample-quality evaluation")

  def eval_labels(self, inputs) -> Array | None:
    """The class each image of ``eval_generate(state, inputs)`` is made to show, for a method
    conditioned on classes (scored as the extractor's ``label_accuracy``); None otherwise."""
    del inputs
    return None

  def eval_scores(self, state: TrainState, condition: dict[str, Array],
                  generated: Array, frozen=None) -> dict[str, Array]:
    """Per-example scores of ``generated`` against its ``condition`` (the evaluation split's
    examples, of every key aligned with EVAL_CONDITION's), averaged into the results; none by
    default."""
    del state, condition, generated, frozen
    return {}

  def anomaly_scores(self, state: TrainState, images: Array, frozen=None) -> Array:
    """Per-example anomaly scores ``[B]`` of uint8 NHWC ``images`` (higher: more anomalous),
    ranked by the ``auroc`` evaluation (``config.eval.metrics``) against
    ``config.dataset.classes``. Methods that score anomalies override this."""
    del state, images, frozen
    raise ConfigError(f"model {self.config.model.name!r} ({type(self).__name__}) gives no "
                      f"anomaly scores for config.eval.metrics=auroc")

  def log_likelihood(self, state: TrainState, images: Array, rng: Array,
                     frozen=None) -> dict[str, Array]:
    """Per-example lower bounds on ``log p(x)`` of uint8 NHWC ``images``, ``{"iwae": [B],
    "elbo": [B]}`` in nats, for the ``nll`` evaluation. Methods with a likelihood override
    this."""
    del state, images, rng, frozen
    raise ConfigError(f"model {self.config.model.name!r} ({type(self).__name__}) has no "
                      f"likelihood for config.eval.metrics=nll")

  def features(self, state: TrainState, images: Array) -> Array:
    """A learned representation of uint8 NHWC ``images`` (at the dataset's size), ``[B, F]``
    float32, for linear probes (experiments/feature_learning.py): what an encoder codes, or a
    discriminator's last features. Methods that learn one override this."""
    del state, images
    raise ConfigError(f"model {self.config.model.name!r} ({type(self).__name__}) has no feature "
                      f"extractor for linear probes")

  def sample_grids(self, state: TrainState, examples: dict[str, Array], rng: Array,
                   frozen=None) -> dict[str, Array]:
    """Named image grids ``[rows, cols, H, W, C]`` in ``value_range`` for PNGs and TensorBoard.

    ``examples`` are the first ``config.num_samples`` training examples (uint8 images).
    """
    raise NotImplementedError
