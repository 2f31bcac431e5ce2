// Weights to the GPU at load, straight from their native bytes (mmapped file pages), never through JS:
// chunks go through two pinned staging buffers (double-buffered H2D), then the GPU dequantizes them to
// BF16 for the GEMMs; types the GPU cannot dequantize (Q5_K, ...) are widened on the CPU instead.
#pragma once
#include <cstdint>
#include <vector>

#include "gpu/context.h"
#include "tensor.h"

namespace mixtile::gpu {

// BF16 [rows][ne0] of `w` (any type dequantize_row reads) into dst (device, w.ne[0] * w.rows() elements).
void upload_bf16(GpuContext& g, const Weight& w, uint16_t* dst);

// Several 2-D weights with the same row length stacked row-wise into one BF16 matrix (fused q/k/v,
// fused gate/up). Throws std::invalid_argument naming `what` if the row lengths differ.
DeviceBuffer upload_bf16_stacked(GpuContext& g, const std::vector<const Weight*>& parts, const char* what);

// f32 copy of a weight (norm vectors, the router) of any type dequantize_row reads.
DeviceBuffer upload_f32(GpuContext& g, const Weight& w, const char* what);

// The bytes as stored (embedding tables the GPU gathers from directly).
DeviceBuffer upload_raw(GpuContext& g, const Weight& w, const char* what);

// Frees the staging buffers once loading is done (they are made again if another upload comes).
void upload_release(GpuContext& g);

}  // namespace mixtile::gpu
