"""Why a LoRA adapter cannot be loaded, unloaded or used, and why a model name is unknown.

One tree; each class carries a stable ``code`` (the ``error.code`` of the HTTP
body, which a control plane can branch on without reading the message) and is
classified where the failure is found, never from message text later. The
HTTP status of each is in ``substratus_ml.app.ERROR_STATUS``::

    AdapterError                      code
    ├── AdapterPathNotFound           adapter_path_not_found   404  (vLLM: 404)
    ├── NotAPeftAdapter               not_a_peft_adapter       400
    ├── AdapterIncompatible           adapter_incompatible     400  modules the base lacks,
    │                                                               shapes, unsupported PEFT features
    ├── AdapterNameInvalid            invalid_adapter_name     400
    ├── AdapterAlreadyLoaded          adapter_already_loaded   409  (vLLM: 400)
    ├── TooManyAdapters               too_many_adapters        409  SUBSTRATUS_MAX_ADAPTERS
    ├── AdapterNotLoaded              adapter_not_loaded       404  (vLLM: 404)
    └── UnknownModel                  model_not_found          404  a request's ``model``
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base of the tree; ``code`` names the case, ``param`` the request field at fault."""

    code = "adapter_error"
    param: str | None = None


class AdapterPathNotFound(AdapterError):
    code = "adapter_path_not_found"
    param = "lora_path"


class NotAPeftAdapter(AdapterError):
    code = "not_a_peft_adapter"
    param = "lora_path"


class AdapterIncompatible(AdapterError):
    code = "adapter_incompatible"
    param = "lora_path"


class AdapterNameInvalid(AdapterError):
    code = "invalid_adapter_name"
    param = "lora_name"


class AdapterAlreadyLoaded(AdapterError):
    code = "adapter_already_loaded"
    param = "lora_name"


class TooManyAdapters(AdapterError):
    code = "too_many_adapters"
    param = "lora_name"


class AdapterNotLoaded(AdapterError):
    code = "adapter_not_loaded"
    param = "lora_name"


class UnknownModel(AdapterError):
    code = "model_not_found"
    param = "model"
