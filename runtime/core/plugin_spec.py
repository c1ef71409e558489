"""The one place that names our TensorRT deformable-convolution plugin.

The ONNX exporter (``--dcn plugin``), the C++ plugin and the runtimes all agree on these values.
The name deliberately differs from TensorRT's built-in ``ModulatedDeformConv2d``.
"""

from __future__ import annotations

PLUGIN_NAME = "ESANModulatedDeformConv2d"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "esan"
# ONNX Runtime's TensorRT execution provider only hands nodes of this domain to TensorRT plugins;
# TensorRT's own ONNX parser ignores the domain and looks the plugin up by op type.
ONNX_DOMAIN = "trt.plugins"

# Node inputs, in order (bias optional): X [N,C,H,W], offset [N,2*dg*kh*kw,Ho,Wo] (torchvision layout:
# per deformable group, per kernel tap, (dy, dx) interleaved), mask [N,dg*kh*kw,Ho,Wo] (already
# sigmoid-ed), weight [Cout,C/groups,kh,kw], bias [Cout].
INPUT_NAMES = ("input", "offset", "mask", "weight", "bias")

# Integer-list attributes hold explicit (h, w) pairs; the two group counts are plain ints.
PAIR_ATTRS = ("stride", "padding", "dilation")
INT_ATTRS = ("groups", "deformable_groups")

# Attributes the TensorRT ONNX parser reads to find the plugin in the registry.
PARSER_VERSION_ATTR = "plugin_version"
PARSER_NAMESPACE_ATTR = "plugin_namespace"

PLUGIN_LIBRARY_BASENAME = "esan_dcn_plugin"
KERNEL_LIBRARY_BASENAME = "esan_dcn_kernels"
