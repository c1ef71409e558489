/*
 * ESAN-RT modulated deformable convolution: plugin identity. These strings must equal
 * runtime/plugin_spec.py (tests/test_plugin_kernel.py checks it).
 */
#ifndef ESAN_MODULATED_DEFORM_CONV_PLUGIN_INFO_H
#define ESAN_MODULATED_DEFORM_CONV_PLUGIN_INFO_H

#define ESAN_DCN_PLUGIN_NAME "ESANModulatedDeformConv2d"
#define ESAN_DCN_PLUGIN_VERSION "1"
#define ESAN_DCN_PLUGIN_NAMESPACE "esan"

// Attribute (PluginField) names; the pairs are INT32[2] in (h, w) order.
#define ESAN_DCN_ATTR_STRIDE "stride"
#define ESAN_DCN_ATTR_PADDING "padding"
#define ESAN_DCN_ATTR_DILATION "dilation"
#define ESAN_DCN_ATTR_GROUPS "groups"
#define ESAN_DCN_ATTR_DEFORMABLE_GROUPS "deformable_groups"

#endif // ESAN_MODULATED_DEFORM_CONV_PLUGIN_INFO_H
