"""Model families; importing this package registers every builder."""

from c3ae_edge.models import c3ae, mobilenet_v2, shufflenet_v2, ssr_net  # noqa: F401
from c3ae_edge.models.registry import (
    ModelCfg,
    PaperRef,
    create_model,
    get_model_cfg,
    list_models,
    register_model,
    shipped_models,
)

__all__ = ["ModelCfg", "PaperRef", "create_model", "get_model_cfg", "list_models", "register_model", "shipped_models"]
