// One level's KernelTable (isa.h): compiled once per instruction-set level, with the kernel files.
#include "isa.h"

#include "isa_begin.h"

extern const KernelTable kernel_table;
const KernelTable kernel_table = {
    &embedding_forward,                  &embedding_backward_sparse,
    &embedding_backward_dense,
    &sum_of_squares,                     &axpy,
    &philox_uniform,                     &dropout_mask,
    &round_to_bf16,                      &round_rows_to_bf16,
    &lstm_forward,                       &lstm_freeze_bf16,
    &lstm_backward,                      &output_layer_forward,
    &output_layer_forward_backward,      &row_product,
    &apply_vecmath,
};

#include "isa_end.h"
