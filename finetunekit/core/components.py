"""The named parts a recipe is made of, and the plan a strategy returns.

Plugins describe each component with one of these frozen dataclasses and hand it to the
``register`` callback of a catalogue hook (see :mod:`finetunekit.core.hookspecs`). A
component is plain data plus a function; the engine never needs to know which plugin
wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finetunekit.core.params import Param

Params = Mapping[str, Param]


@dataclass(frozen=True)
class Backbone:
    """A pretrained convolutional base.

    Args:
        name: str. Recipe name, e.g. ``"vgg16"``.
        build: callable. ``build(input_shape, weights, **params)`` returns a
            ``keras.Model`` without its classification top. ``weights`` is
            ``"imagenet"`` or ``None``; weights files are loaded by the engine.
        preprocess: callable or None. Returns a fresh Keras layer that turns uint8 RGB
            pixels into what the weights expect; None if the base normalises itself.
        min_size: int. Smallest input height and width the base accepts.
        blocks: callable or None. ``blocks(base)`` returns the base's top-level layer
            names grouped into ordered blocks (stem first), so that "the last N blocks"
            means something for this family. None: every layer is its own block.
        params: mapping of extra recipe keys ``[backbone]`` accepts for this backbone.
        description: str. One line for ``finetunekit list``.
    """

    name: str
    build: Callable[..., Any]
    preprocess: Callable[[], Any] | None = None
    min_size: int = 32
    blocks: Callable[[Any], list[list[str]]] | None = None
    params: Params = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Stage:
    """One phase of a fine-tuning plan.

    Args:
        name: str. Shown in progress output and history, e.g. ``"feature_extraction"``.
        epochs: int. Epochs this stage trains for.
        trainable: frozenset of str. Names of the base's top-level layers that train in
            this stage; every other base layer is frozen. The head always trains.
        learning_rate: float. Peak learning rate of the optimizer built for this stage.
        train_bn: bool. Whether BatchNormalization layers among ``trainable`` train
            (batch statistics, moving averages, gamma and beta). If False they stay
            frozen and run in inference mode; only a ``variables`` filter that picks
            their gamma or beta trains those (moving statistics still kept).
        lr_scales: mapping of str to float. Per base layer, a factor on
            ``learning_rate`` for that layer's variables: a true per-variable learning
            rate, applied inside the optimizer's update (not by scaling gradients, which
            Adam and RMSprop would undo). Layers not listed, and the head, get 1.0.
        variables: callable or None. ``variables(layer, variable)`` says which variables
            of the trainable layers train (e.g. only biases); None: all of them.
            BatchNorm layers that train (``train_bn``) train whole whatever it says.
    """

    name: str
    epochs: int
    trainable: frozenset[str]
    learning_rate: float
    train_bn: bool = False
    lr_scales: Mapping[str, float] = field(default_factory=dict)
    variables: Callable[[Any, Any], bool] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "train_bn": self.train_bn,
            "batchnorm": "train" if self.train_bn else "inference",
            "trainable_layers": sorted(self.trainable),
            "learning_rates": {name: self.learning_rate * scale
                               for name, scale in sorted(self.lr_scales.items())},
            "variables": getattr(self.variables, "__name__", "all") if self.variables else "all",
        }


@dataclass(frozen=True)
class Plan:
    """What a strategy decided: the stages to run, in order."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("A plan needs at least one stage.")

    @property
    def epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)


@dataclass(frozen=True)
class PlanContext:
    """What a strategy sees when it plans.

    Args:
        base: keras.Model. The convolutional base, weights loaded.
        blocks: list of list of str. The base's layer names grouped into blocks.
        epochs: int. ``train.epochs`` from the recipe.
        learning_rate: float. ``optimizer.learning_rate`` from the recipe.
        train_bn: bool. ``strategy.train_bn`` from the recipe.
        head: keras.Layer or None. The head, already built (its variables exist).
    """

    base: Any
    blocks: Sequence[Sequence[str]]
    epochs: int
    learning_rate: float
    train_bn: bool
    head: Any = None

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.base.layers]


@dataclass(frozen=True)
class Strategy:
    """A freezing policy: turns a base into a :class:`Plan`.

    Args:
        name: str. Recipe name, e.g. ``"partial"``.
        plan: callable. ``plan(context, **params)`` returns a :class:`Plan`.
            ``context`` is a :class:`PlanContext`. Raise
            :class:`~finetunekit.core.errors.RecipeError` naming ``strategy.<key>`` for a
            value that does not fit this base.
        params: mapping of extra recipe keys ``[strategy]`` accepts.
        description: str. One line for ``finetunekit list``.
    """

    name: str
    plan: Callable[..., Plan]
    params: Params = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class BuiltHead:
    """What a head component builds: the layer and how to train it.

    Args:
        layer: keras.Layer. Maps base features to predictions; reused across stages.
        loss: str or keras loss. Loss to compile with.
        metrics: list. Metrics to compile with.
    """

    layer: Any
    loss: Any
    metrics: list = field(default_factory=list)


@dataclass(frozen=True)
class Head:
    """A classification head.

    Args:
        name: str. Recipe name, e.g. ``"dense"``.
        build: callable. ``build(feature_shape, **params)`` returns a :class:`BuiltHead`.
        params: mapping of recipe keys ``[head]`` accepts.
        description: str. One line for ``finetunekit list``.
    """

    name: str
    build: Callable[..., BuiltHead]
    params: Params = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Steps:
    """The steps of the stage an optimizer is built for.

    Args:
        per_epoch: int or None. Batches per epoch (None: the data does not say).
        total: int or None. Steps of the whole stage (``per_epoch * epochs``).
        stage: :class:`Stage`. The stage.
    """

    per_epoch: int | None
    total: int | None
    stage: Stage


@dataclass(frozen=True)
class Optimizer:
    """An optimizer factory.

    Args:
        name: str. Recipe name, e.g. ``"rmsprop"``.
        build: callable. ``build(learning_rate, weight_decay, **params)`` returns a
            ``keras.optimizers.Optimizer``. ``learning_rate`` is a float or a Keras
            learning-rate schedule (``optimizer.schedule``). A build function with a
            parameter named ``steps`` also gets ``steps=``:class:`Steps` (steps per epoch
            and of the stage, for a schedule of its own); others are called without it.
        params: mapping of extra recipe keys ``[optimizer]`` accepts.
        description: str. One line for ``finetunekit list``.
    """

    name: str
    build: Callable[..., Any]
    params: Params = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Format:
    """A persistence format.

    Args:
        name: str. Recipe name, e.g. ``"keras"``.
        suffix: str. File or folder suffix the format writes, e.g. ``".keras"``.
        save: callable. ``save(model, path, run)`` writes the model to ``path``; ``run``
            is the :class:`~finetunekit.Run` or None.
        load: callable. ``load(path, safe_mode, template)`` returns a ``keras.Model``;
            ``template()`` builds the recipe's model, for weights-only formats.
        trainable: bool. Whether a loaded model can be trained further (False for
            export-only formats such as SavedModel).
        description: str. One line for ``finetunekit list``.
    """

    name: str
    suffix: str
    save: Callable[..., None]
    load: Callable[..., Any]
    trainable: bool = True
    description: str = ""


@dataclass(frozen=True)
class Data:
    """Loaded training data.

    Args:
        train: ``(x, y)`` numpy arrays (x uint8, NHWC) or anything ``keras.Model.fit``
            accepts (a ``tf.data.Dataset`` or ``keras.utils.PyDataset`` yielding batches).
        validation: same kinds as ``train``, or None.
        class_names: list of str, or None if unknown.
        report: dict or None. What loading found, for a source that scans files: counts
            loaded and skipped (by reason, with the files), conversions made, memory
            held (docs/data.md). None if the source does not report.
    """

    train: Any
    validation: Any = None
    class_names: list[str] | None = None
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class DataContext:
    """What a data source sees: the model's input and the recipe's batch and seed."""

    input_shape: tuple[int, int, int]
    batch_size: int
    seed: int


@dataclass(frozen=True)
class DataSource:
    """A way to load training data.

    Args:
        name: str. Recipe name (``[data] source``), e.g. ``"folder"``.
        load: callable. ``load(context, **params)`` returns :class:`Data`.
            ``context`` is a :class:`DataContext`.
        params: mapping of extra recipe keys ``[data]`` accepts.
        description: str. One line for ``finetunekit list``.
    """

    name: str
    load: Callable[..., Data]
    params: Params = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Augmentation:
    """Random image augmentation, run inside the model on training batches only.

    Args:
        name: str. Recipe name (``[augment] name``), e.g. ``"basic"``.
        build: callable. ``build(input_shape, **params)`` returns a Keras layer (or
            None for no augmentation) that maps a batch of images with pixel values in
            [0, 255] to augmented images in the same range. Keras's random layers act
            only when ``training=True``, so the saved model predicts unaugmented.
        params: mapping of extra recipe keys ``[augment]`` accepts (passed to ``build``
            and to ``mix``).
        description: str. One line for ``finetunekit list``.
        mix: callable or None. For an augmentation that mixes labels too (MixUp,
            CutMix): ``mix(images, labels, other_images, other_labels, rng, **params)``
            takes a batch and its partners (uint8 images, float32 soft labels of shape
            ``(n, classes)``: one-hot rows, or one column for a sigmoid head) and a
            ``numpy.random.Generator``, and returns the mixed uint8 images and their
            soft labels, shaped like the inputs. It runs outside the model on training
            batches only, so the engine also switches the head's loss and accuracy to
            their soft-label forms and the feature cache off (docs/data.md).
    """

    name: str
    build: Callable[..., Any]
    params: Params = field(default_factory=dict)
    description: str = ""
    mix: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Observer:
    """A lifecycle plugin's recipe keys and state, so that it can be configured, listed and
    resumed like any component. Its behaviour stays in its lifecycle hooks.

    Args:
        name: str. Shown by ``finetunekit list``; the key of its state in checkpoints.
        section: str. The recipe section it owns, e.g. ``"notify"`` for ``[notify]``;
            not an engine section, unique among observers. Present in a recipe, its
            validated keys (defaults filled) are in ``run.settings[section]``.
        params: mapping of the keys ``[section]`` accepts.
        description: str. One line for ``finetunekit list``.
        state: callable or None. ``state()`` returns what to keep in each epoch
            checkpoint: JSON values and numpy arrays, in dicts and lists.
        restore: callable or None. ``restore(state)`` takes it back when a run resumes.
    """

    name: str
    section: str
    params: Params = field(default_factory=dict)
    description: str = ""
    state: Callable[[], Any] | None = None
    restore: Callable[[Any], None] | None = None


COMPONENT_KINDS: dict[str, type] = {
    "backbone": Backbone,
    "strategy": Strategy,
    "head": Head,
    "optimizer": Optimizer,
    "format": Format,
    "data": DataSource,
    "augmentation": Augmentation,
    "observer": Observer,
}
"""Component kind -> the dataclass that describes it."""
