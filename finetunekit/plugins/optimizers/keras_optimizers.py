"""Built-in optimizers: Keras's RMSprop, Adam, AdamW and SGD with momentum; and
``custom``, the name a run folder's recipe records for an optimizer given from Python."""

from __future__ import annotations

import keras

from finetunekit.core.components import Optimizer
from finetunekit.core.errors import RecipeError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl
from finetunekit.core.schedules import PYTHON_OPTIMIZER


def build_rmsprop(learning_rate, weight_decay, rho=0.9, momentum=0.0):
    return keras.optimizers.RMSprop(learning_rate, rho=rho, momentum=momentum,
                                    weight_decay=weight_decay)


def build_adam(learning_rate, weight_decay, beta_1=0.9, beta_2=0.999):
    return keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2,
                                 weight_decay=weight_decay)


def build_adamw(learning_rate, weight_decay, beta_1=0.9, beta_2=0.999):
    return keras.optimizers.AdamW(learning_rate, weight_decay=0.004 if weight_decay is None else weight_decay,
                                  beta_1=beta_1, beta_2=beta_2)


def build_sgd(learning_rate, weight_decay, momentum=0.9, nesterov=False):
    return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)


def build_custom(learning_rate, weight_decay):
    raise RecipeError(
        f"optimizer.name = \"{PYTHON_OPTIMIZER}\" records a run whose optimizer was given from "
        "Python (its class and config are in the run folder's optimizer.json); a recipe "
        "cannot rebuild it. Pass it again (Engine.run / resume / retrain(..., optimizer=...)), "
        "or set optimizer.name to a registered optimizer (finetunekit list).")


_BETAS = {
    "beta_1": Param(float, 0.9, min=0.0, max=1.0),
    "beta_2": Param(float, 0.999, min=0.0, max=1.0),
}


@hookimpl
def finetunekit_register_optimizers(register):
    register(Optimizer(
        name="rmsprop", build=build_rmsprop,
        params={"rho": Param(float, 0.9, min=0.0, max=1.0),
                "momentum": Param(float, 0.0, min=0.0, max=1.0)},
        description="RMSprop (the seed's optimizer).",
    ))
    register(Optimizer(name="adam", build=build_adam, params=dict(_BETAS), description="Adam."))
    register(Optimizer(name="adamw", build=build_adamw, params=dict(_BETAS),
                       description="AdamW; weight_decay defaults to 0.004 as in Keras."))
    register(Optimizer(
        name="sgd", build=build_sgd,
        params={"momentum": Param(float, 0.9, min=0.0, max=1.0),
                "nesterov": Param(bool, False)},
        description="SGD with momentum.",
    ))
    register(Optimizer(
        name=PYTHON_OPTIMIZER, build=build_custom,
        description="An optimizer given from Python (Engine.run(optimizer=...)); recorded "
                    "in the run folder's optimizer.json. Not buildable from a recipe.",
    ))
