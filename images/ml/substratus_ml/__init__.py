"""Training and serving code for Substratus' reference model images.

The images' contract scripts are thin wrappers around the ``substratus-ml``
console script (see :mod:`substratus_ml.cli`): ``serve.sh`` runs ``serve``,
``train.sh`` runs ``train``, and image builds run ``init-tiny`` or
``init-gemma`` to put a model into ``/model/saved``.
"""

__version__ = "0.1.0"
