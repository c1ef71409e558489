"""Serving ESAN-RT on NVIDIA Triton Inference Server (docs/design.md section 6).

* ``repository`` -- writes a Triton model repository (model ``esan``: config.pbtxt + a thin model.py + the bundle);
* ``triton_model`` -- the Python-backend model; ``router`` -- its requests -> ``MultiStreamScheduler`` rounds;
* ``server`` -- finds (or installs) ``tritonserver`` and runs it; ``client`` -- ``RemoteStream``, the
  push/finish processor whose compute is on a server; ``protocol`` -- the tensor and parameter names both share.

Layering: cli > serving > io > backends > core. ``tritonclient`` and Triton's ``triton_python_backend_utils``
are imported lazily, only where they are used.
"""
