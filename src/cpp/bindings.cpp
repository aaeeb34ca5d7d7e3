// Python bindings of ptbfast._core: validate every argument with a clear Python exception, allocate
// the results, then run the kernel with the GIL released.
//
// Policy for arrays: float arrays must already be float32 and C-contiguous (TypeError / ValueError
// otherwise: a silent float64 -> float32 copy would hide a 2x memory cost and a precision change);
// ids may be int32 or int64 and must lie in [0, V) (IndexError). The Python layer
// (ptbfast.ops) converts friendlier inputs before calling here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>


#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bf16.h"
#include "blas.h"
#include "cpu_features.h"
#include "frozen_weights.h"
#include "gemm/bf16/gemm_bf16.h"
#include "heap.h"
#include "isa.h"
#include "kernels.h"
#include "profile.h"
#include "runtime.h"
#include "time_loop_team.h"

namespace py = pybind11;
using namespace ptbfast;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += std::to_string(a.shape(d)) + (a.ndim() == 1 || d + 1 < a.ndim() ? "," : "");
  return s + ")";
}

std::string dims_str(const std::vector<py::ssize_t>& dims) {
  std::string s = "(";
  for (size_t d = 0; d < dims.size(); ++d)
    s += (dims[d] < 0 ? std::string("any") : std::to_string(dims[d])) + (dims.size() == 1 || d + 1 < dims.size() ? "," : "");
  return s + ")";
}

// A float32, C-contiguous array of the given shape (-1 = any size on that axis).
const float* float_input(const py::array& a, const char* name, const std::vector<py::ssize_t>& dims) {
  // equal(), not is(): a native float32 descriptor need not be NumPy's singleton (one with
  // metadata, or made by newbyteorder('<'), is float32 too); byte-swapped '>f4' compares unequal.
  if (!a.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " must be float32, got " + std::string(py::str(a.dtype())) +
                         " (ptbfast computes in float32: convert with .astype(np.float32))");
  if (a.ndim() != static_cast<py::ssize_t>(dims.size()))
    throw py::value_error(std::string(name) + " must have " + std::to_string(dims.size()) + " dimensions " +
                          dims_str(dims) + ", got shape " + shape_str(a));
  for (size_t d = 0; d < dims.size(); ++d)
    if (dims[d] >= 0 && a.shape(d) != dims[d])
      throw py::value_error(std::string(name) + " must have shape " + dims_str(dims) + ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (use np.ascontiguousarray)");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))  // (a float* to it would be undefined behaviour)
    throw py::value_error(std::string(name) + " is not aligned to 4 bytes (a view at an odd byte offset): pass a copy");
  return static_cast<const float*>(a.data());
}

float* float_output(py::array& a, const char* name, const std::vector<py::ssize_t>& dims) {
  float_input(a, name, dims);
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only but is written in place");
  return static_cast<float*>(a.mutable_data());
}

// An array written in place must not share memory with an array the kernel reads (the kernels read
// their inputs while writing, and from several threads): a ValueError, as np.shares_memory would say.
// elementwise_alias_ok: the same array as both is fine where each element is read before it is written.
void require_disjoint(const py::array& out, const char* out_name, const py::array& in, const char* in_name,
                      bool elementwise_alias_ok = false) {
  const auto* o = static_cast<const char*>(out.data());
  const auto* i = static_cast<const char*>(in.data());
  const py::ssize_t on = out.nbytes(), in_bytes = in.nbytes();
  if (on == 0 || in_bytes == 0 || o + on <= i || i + in_bytes <= o) return;
  if (elementwise_alias_ok && o == i && on == in_bytes) return;
  throw py::value_error(std::string(out_name) + " shares memory with " + in_name + ", which is read while " +
                        out_name + " is written: pass a copy (" + in_name + ".copy())");
}

void require_int(py::ssize_t value, const char* what) {
  if (value > INT_MAX)
    throw py::value_error(std::string(what) + " = " + std::to_string(value) + " is too large (limit " +
                          std::to_string(INT_MAX) + ")");
}

// True if the array's bytes are in this machine's order ('=' native, '|' not applicable).
bool native_byte_order(const py::array& a) {
  const char order = a.dtype().byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return order == '=' || order == '|' || order == '>';
#else
  return order == '=' || order == '|' || order == '<';
#endif
}

// int32 or int64 ids in native byte order, C-contiguous, each in [0, V): copied as int64, then
// checked. The kernels read the copy, so what they read is what was checked even if another thread
// writes the array meanwhile (NumPy releases the GIL inside its own loops, and the kernels do).
std::vector<int64_t> checked_ids(const py::array& ids, const char* name, int64_t V) {
  // A byte-swapped '>i8' array would be read as other (possibly in-range, so silently wrong) ids.
  const bool is_int = ids.dtype().kind() == 'i' && (ids.itemsize() == 4 || ids.itemsize() == 8) &&
                      native_byte_order(ids);
  if (!is_int)
    throw py::type_error(std::string(name) + " must be int32 or int64, got " + std::string(py::str(ids.dtype())));
  if (!(ids.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (use np.ascontiguousarray)");
  std::vector<int64_t> out(static_cast<size_t>(ids.size()));
  // Byte copies: a view at an odd offset (np.frombuffer(..., offset=1)) may not be read through an
  // int32_t* or int64_t* (undefined behaviour; a fault on some CPUs).
  const char* bytes = static_cast<const char*>(ids.data());
  if (ids.itemsize() == 8 && !out.empty()) std::memcpy(out.data(), bytes, out.size() * sizeof(int64_t));
  for (size_t k = 0; ids.itemsize() == 4 && k < out.size(); ++k) {
    int32_t id;
    std::memcpy(&id, bytes + k * sizeof(int32_t), sizeof(int32_t));
    out[k] = id;
  }
  for (size_t k = 0; k < out.size(); ++k)
    if (out[k] < 0 || out[k] >= V)
      throw py::index_error(std::string(name) + " has " + std::to_string(out[k]) + " at flat position " +
                            std::to_string(k) + ", outside the vocabulary [0, " + std::to_string(V) + ")");
  return out;
}

py::array_t<float> new_float_array(std::vector<py::ssize_t> shape) { return py::array_t<float>(shape); }

// ---- embedding -----------------------------------------------------------------------------------

py::array embedding_forward_py(const py::array& params, const py::array& ids) {
  const float* p = float_input(params, "params", {-1, -1});
  const int64_t V = params.shape(0), H = params.shape(1);
  const std::vector<int64_t> id = checked_ids(ids, "ids", V);
  std::vector<py::ssize_t> shape(ids.shape(), ids.shape() + ids.ndim());
  shape.push_back(H);
  py::array_t<float> out(shape);
  float* o = out.mutable_data();
  const int64_t n = ids.size();
  py::gil_scoped_release nogil;
  embedding_forward(o, p, id.data(), n, H);
  return std::move(out);
}

// d_out has shape ids.shape + (H,)
int64_t check_d_out(const py::array& d_out, const py::array& ids) {
  std::vector<py::ssize_t> dims(ids.shape(), ids.shape() + ids.ndim());
  dims.push_back(-1);
  float_input(d_out, "d_out", dims);
  return d_out.shape(d_out.ndim() - 1);
}

py::tuple embedding_backward_sparse_py(const py::array& d_out, const py::array& ids) {
  const std::vector<int64_t> id = checked_ids(ids, "ids", INT64_MAX);
  const int64_t H = check_d_out(d_out, ids);
  const float* g = static_cast<const float*>(d_out.data());
  std::vector<int64_t> unique_ids;
  std::vector<float> summed;
  const int64_t n = ids.size();
  {
    py::gil_scoped_release nogil;
    embedding_backward_sparse(unique_ids, summed, g, id.data(), n, H);
  }
  const py::ssize_t U = static_cast<py::ssize_t>(unique_ids.size());
  py::array_t<int64_t> ids_out(U);
  std::copy(unique_ids.begin(), unique_ids.end(), ids_out.mutable_data());
  py::array_t<float> rows_out(std::vector<py::ssize_t>{U, static_cast<py::ssize_t>(H)});
  std::copy(summed.begin(), summed.end(), rows_out.mutable_data());
  return py::make_tuple(ids_out, rows_out);
}

void embedding_backward_dense_py(py::array& d_params, const py::array& d_out, const py::array& ids, float scale) {
  float* dp = float_output(d_params, "d_params", {-1, -1});
  const std::vector<int64_t> id = checked_ids(ids, "ids", d_params.shape(0));
  const int64_t H = check_d_out(d_out, ids);
  require_disjoint(d_params, "d_params", d_out, "d_out");
  if (H != d_params.shape(1))
    throw py::value_error("d_out's last axis (" + std::to_string(H) + ") must equal d_params' width (" +
                          std::to_string(d_params.shape(1)) + ")");
  const float* g = static_cast<const float*>(d_out.data());
  const int64_t n = ids.size();
  py::gil_scoped_release nogil;
  embedding_backward_dense(dp, g, id.data(), n, H, scale);
}

double sum_of_squares_py(const py::array& x) {
  const float* xi = float_input(x, "x", std::vector<py::ssize_t>(x.ndim(), -1));
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  return sum_of_squares(xi, n);
}

void philox_uniform_py(py::array& out, uint64_t seed, uint32_t stream) {
  float* o = float_output(out, "out", std::vector<py::ssize_t>(out.ndim(), -1));
  const int64_t n = out.size();
  py::gil_scoped_release nogil;
  philox_uniform(o, n, seed, stream);
}

void dropout_mask_py(py::array& out, uint64_t seed, uint32_t stream, float keep_prob, float scale) {
  if (!(keep_prob > 0.0f && keep_prob <= 1.0f) || !std::isfinite(scale))  // (a NaN keep_prob kept nothing)
    throw py::value_error("dropout_mask needs keep_prob in (0, 1] and a finite scale, got " +
                          std::to_string(keep_prob) + " and " + std::to_string(scale));
  float* o = float_output(out, "out", std::vector<py::ssize_t>(out.ndim(), -1));
  const int64_t n = out.size();
  py::gil_scoped_release nogil;
  dropout_mask(o, n, seed, stream, keep_prob, scale);
}

void axpy_py(py::array& y, const py::array& x, float alpha) {
  std::vector<py::ssize_t> dims(y.ndim(), -1);
  float* yo = float_output(y, "y", dims);
  const float* xi = float_input(x, "x", std::vector<py::ssize_t>(y.shape(), y.shape() + y.ndim()));
  require_disjoint(y, "y", x, "x", /*elementwise_alias_ok=*/true);
  const int64_t n = y.size();
  py::gil_scoped_release nogil;
  axpy(yo, xi, alpha, n);
}

// ---- LSTM ------------------------------------------------------------------------------------------

struct LstmShape {
  int T, B, In, H;
};

// bias: nullptr where there is none to check (the backward takes no bias).
LstmShape check_lstm(const py::array& x, const py::array& kernel, const py::array* bias, const py::array& c0,
                     const py::array& h0) {
  float_input(x, "x", {-1, -1, -1});
  float_input(kernel, "kernel", {-1, -1});
  const py::ssize_t G = kernel.shape(1);
  if (G % 4 != 0 || G == 0)
    throw py::value_error("kernel must have shape (In+H, 4H) with H >= 1, got " + shape_str(kernel));
  const py::ssize_t H = G / 4, In = x.shape(2);
  if (kernel.shape(0) != In + H)
    throw py::value_error("kernel has " + std::to_string(kernel.shape(0)) + " rows; expected In + H = " +
                          std::to_string(In) + " + " + std::to_string(H) + " for x of shape " + shape_str(x));
  if (bias) float_input(*bias, "bias", {G});
  float_input(c0, "c0", {x.shape(1), H});
  float_input(h0, "h0", {x.shape(1), H});
  require_int(x.shape(0), "T");  // (each side: with B = 0 the products below are 0 whatever T is)
  require_int(x.shape(1), "B");
  require_int(In, "the input width");
  require_int(G, "4H");
  require_int(x.shape(0) * x.shape(1), "T * B");
  require_int(x.shape(0) * x.shape(1) * G, "T * B * 4H");
  require_int(kernel.size(), "kernel size");
  return {static_cast<int>(x.shape(0)), static_cast<int>(x.shape(1)), static_cast<int>(In), static_cast<int>(H)};
}

const float* f(const py::array& a) { return static_cast<const float*>(a.data()); }

// An argument typed py::object (because None is allowed) must be checked to be an ndarray before
// it is used as one: reinterpret_borrow alone would read a list's or float's memory as an array.
py::array array_or_none(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a float32 numpy array or None, got " +
                         std::string(py::str(py::type::of(obj))));
  return py::reinterpret_borrow<py::array>(obj);
}

using Frozen = std::shared_ptr<FrozenWeights>;

// A frozen layer's packs must be of this kernel's shape (the packs are made from a copy: a wrong
// pairing would multiply other weights silently).
void check_frozen_lstm(const Frozen& frozen, const LstmShape& s) {
  if (frozen && (frozen->lstm_inputs != s.In || frozen->lstm_units != s.H))
    throw py::value_error("frozen: these packed weights are not an LSTM kernel of " + std::to_string(s.In) +
                          " inputs and " + std::to_string(s.H) + " units (make them with freeze_lstm_weights_bf16)");
}

py::tuple lstm_forward_py(const py::array& x, const py::array& c0, const py::array& h0, const py::array& kernel,
                          const py::array& bias, float forget_bias, bool bf16, const Frozen& frozen) {
  const LstmShape s = check_lstm(x, kernel, &bias, c0, h0);
  check_frozen_lstm(frozen, s);
  auto h_all = new_float_array({s.T, s.B, s.H});
  auto c_all = new_float_array({s.T, s.B, s.H});
  auto gates = new_float_array({s.T, s.B, 4 * s.H});
  float *ho = h_all.mutable_data(), *co = c_all.mutable_data(), *go = gates.mutable_data();
  {
    py::gil_scoped_release nogil;
    lstm_forward(ho, co, go, f(x), f(c0), f(h0), f(kernel), f(bias), forget_bias, s.T, s.B, s.In, s.H, bf16,
                 frozen.get());
  }
  return py::make_tuple(h_all, c_all, gates);
}

Frozen freeze_lstm_weights_bf16_py(const py::array& kernel, py::ssize_t input_size, bool rounded_copies) {
  float_input(kernel, "kernel", {-1, -1});
  const py::ssize_t G = kernel.shape(1);
  if (G % 4 != 0 || G == 0 || input_size < 0 || kernel.shape(0) != input_size + G / 4)
    throw py::value_error("kernel must have shape (input_size + H, 4H) with H >= 1, got " + shape_str(kernel) +
                          " for input_size " + std::to_string(input_size));
  require_int(kernel.size(), "kernel size");
  auto frozen = std::make_shared<FrozenWeights>();
  {
    py::gil_scoped_release nogil;
    lstm_freeze_bf16(*frozen, f(kernel), static_cast<int>(input_size), static_cast<int>(G / 4), rounded_copies);
  }
  return frozen;
}

py::tuple lstm_backward_py(const py::array& d_h_all, const py::object& d_c_T, const py::object& d_h_T,
                           const py::array& x, const py::array& c0, const py::array& h0, const py::array& kernel,
                           const py::array& h_all, const py::array& c_all, const py::array& gates, bool bf16) {
  const LstmShape s = check_lstm(x, kernel, nullptr, c0, h0);  // (a bias-sized array made for it once
                                                                // allocated 4 TiB for a kernel of 0 x 2^40)
  float_input(d_h_all, "d_h_all", {s.T, s.B, s.H});
  float_input(h_all, "h_all", {s.T, s.B, s.H});
  float_input(c_all, "c_all", {s.T, s.B, s.H});
  float_input(gates, "gates", {s.T, s.B, 4 * s.H});
  const float* dc_T = nullptr;
  const float* dh_T = nullptr;
  py::array dc_arr, dh_arr;
  if (!d_c_T.is_none()) {
    dc_arr = array_or_none(d_c_T, "d_c_T");
    dc_T = float_input(dc_arr, "d_c_T", {s.B, s.H});
  }
  if (!d_h_T.is_none()) {
    dh_arr = array_or_none(d_h_T, "d_h_T");
    dh_T = float_input(dh_arr, "d_h_T", {s.B, s.H});
  }
  auto dx = new_float_array({s.T, s.B, s.In});
  auto dc0 = new_float_array({s.B, s.H});
  auto dh0 = new_float_array({s.B, s.H});
  auto dkernel = new_float_array({s.In + s.H, 4 * s.H});
  auto dbias = new_float_array({4 * s.H});
  float *dxo = dx.mutable_data(), *dco = dc0.mutable_data(), *dho = dh0.mutable_data();
  float *dko = dkernel.mutable_data(), *dbo = dbias.mutable_data();
  {
    py::gil_scoped_release nogil;
    lstm_backward(dxo, dco, dho, dko, dbo, f(d_h_all), dc_T, dh_T, f(x), f(c0), f(h0), f(kernel), f(h_all),
                  f(c_all), f(gates), s.T, s.B, s.In, s.H, bf16);
  }
  return py::make_tuple(dx, dc0, dh0, dkernel, dbias);
}

// ---- output layer ------------------------------------------------------------------------------

struct OutputShape {
  int N, H, V;
  std::vector<int64_t> targets;  // (checked_ids' copy: what the kernel reads)
};

// w is softmax_w [H, V], or with transposed the tied embedding [V, H].
OutputShape check_output(const py::array& h, const py::array& w, const py::array& b, const py::array& targets,
                         bool transposed) {
  float_input(h, "h", {-1, -1});
  if (transposed)
    float_input(w, "softmax_w (transposed: the embedding)", {-1, h.shape(1)});
  else
    float_input(w, "softmax_w", {h.shape(1), -1});
  const py::ssize_t V = transposed ? w.shape(0) : w.shape(1);
  require_int(h.shape(1), "H");
  require_int(V, "the vocabulary size V");  // (its own check: with H = 0, w.size() is 0 whatever V is)
  float_input(b, "softmax_b", {V});
  if (V == 0) throw py::value_error("softmax_w must have at least one column (vocabulary size >= 1)");
  if (targets.ndim() != 1 || targets.shape(0) != h.shape(0))
    throw py::value_error("targets must have shape (" + std::to_string(h.shape(0)) + ",), got " + shape_str(targets));
  require_int(h.shape(0), "N");
  require_int(w.size(), "softmax_w size");
  require_int(h.size(), "h size");
  return {static_cast<int>(h.shape(0)), static_cast<int>(h.shape(1)), static_cast<int>(V),
          checked_ids(targets, "targets", V)};
}

py::tuple output_layer_forward_py(const py::array& h, const py::array& w, const py::array& b,
                                  const py::array& targets, int block_rows, bool transposed, int block_columns,
                                  bool bf16, bool w_is_bf16, const Frozen& frozen) {
  const OutputShape s = check_output(h, w, b, targets, transposed);
  if (frozen && (!frozen->output || frozen->output->K() != s.H || frozen->output->N() != s.V))
    throw py::value_error("frozen: these packed weights are not output weights of " + std::to_string(s.H) + " x " +
                          std::to_string(s.V) + " (make them with freeze_output_weights_bf16)");
  const std::vector<int64_t>& t = s.targets;
  auto losses = new_float_array({s.N});
  float* lo = losses.mutable_data();
  double total;
  {
    py::gil_scoped_release nogil;
    total = output_layer_forward(lo, f(h), f(w), f(b), t.data(), s.N, s.H, s.V, block_rows, block_columns,
                                 transposed, bf16, w_is_bf16, frozen.get());
  }
  return py::make_tuple(total, losses);
}

// The logits' B (w [H, V], or with transposed the embedding [V, H] read as its transpose) packed once,
// or None where no product of that shape runs on a kernel that takes a packed B.
std::optional<Frozen> freeze_output_weights_bf16_py(const py::array& w, bool transposed) {
  float_input(w, transposed ? "softmax_w (transposed: the embedding)" : "softmax_w", {-1, -1});
  const char* const name = transposed ? "the embedding (softmax_w transposed)" : "softmax_w";
  require_int(w.shape(0), (std::string("rows of ") + name).c_str());
  require_int(w.shape(1), (std::string("columns of ") + name).c_str());
  require_int(w.size(), "softmax_w size");
  const int H = static_cast<int>(transposed ? w.shape(1) : w.shape(0));
  const int V = static_cast<int>(transposed ? w.shape(0) : w.shape(1));
  const std::string kernel = blas::bf16_packed_b_kernel(1 << 20, V, H);
  if (kernel.empty()) return std::nullopt;
  auto frozen = std::make_shared<FrozenWeights>();
  frozen->output_kernel = kernel;
  {
    py::gil_scoped_release nogil;
    frozen->output.reset(transposed ? new gemm::bf16::PackedB(f(w), H, V, 1, H)
                                    : new gemm::bf16::PackedB(f(w), H, V, V, 1));
  }
  return frozen;
}

py::tuple output_layer_forward_backward_py(const py::array& h, const py::array& w, const py::array& b,
                                           const py::array& targets, float d_loss, int block_rows,
                                           bool transposed, int block_columns, bool bf16) {
  const OutputShape s = check_output(h, w, b, targets, transposed);
  const std::vector<int64_t>& t = s.targets;
  auto losses = new_float_array({s.N});
  auto dh = new_float_array({s.N, s.H});
  auto dw = transposed ? new_float_array({s.V, s.H}) : new_float_array({s.H, s.V});
  auto db = new_float_array({s.V});
  float *lo = losses.mutable_data(), *dho = dh.mutable_data(), *dwo = dw.mutable_data(), *dbo = db.mutable_data();
  double total;
  {
    py::gil_scoped_release nogil;
    total = output_layer_forward_backward(lo, dho, dwo, dbo, f(h), f(w), f(b), t.data(), d_loss, s.N, s.H, s.V,
                                          block_rows, block_columns, transposed, bf16);
  }
  return py::make_tuple(total, losses, dh, dw, db);
}

// ---- bf16 rounding -------------------------------------------------------------------------------

py::array round_bf16_py(const py::array& x) {
  std::vector<py::ssize_t> dims(x.ndim(), -1);
  const float* in = float_input(x, "x", dims);
  py::array_t<float> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  float* o = out.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  round_to_bf16(o, in, n);
  return std::move(out);
}

// op(a) @ op(b) through ptbfast's products: SGEMM, or with bf16 (operands that hold bf16 values)
// the bf16 products path; op transposes a C-contiguous array when trans_*. With c: c += the
// product, in place (beta 1). For tests and benchmarks of the paths themselves.
py::array matmul_py(const py::array& a, const py::array& b, bool bf16, bool trans_a, bool trans_b,
                    std::optional<py::array> c) {
  const float* pa = float_input(a, "a", {-1, -1});
  const py::ssize_t M = a.shape(trans_a ? 1 : 0), K = a.shape(trans_a ? 0 : 1);
  const float* pb = float_input(b, "b", trans_b ? std::vector<py::ssize_t>{-1, K} : std::vector<py::ssize_t>{K, -1});
  const py::ssize_t N = b.shape(trans_b ? 0 : 1);
  require_int(M, "rows of the product");
  require_int(K, "the inner dimension");
  require_int(N, "columns of the product");
  py::array out = c ? *c : py::array(py::array_t<float>({M, N}));
  float* o = c ? float_output(out, "c", {M, N}) : static_cast<float*>(out.mutable_data());
  if (c) {
    require_disjoint(out, "c", a, "a");
    require_disjoint(out, "c", b, "b");
  }
  const int lda = static_cast<int>(a.shape(1)), ldb = static_cast<int>(b.shape(1));
  py::gil_scoped_release nogil;
  blas::gemm_for(bf16)(trans_a, trans_b, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, pa,
                       lda, pb, ldb, c ? 1.0f : 0.0f, o, static_cast<int>(N));
  return out;
}

// A [K, N] matrix rounded to bf16 and packed once for many products on one of ptbfast's kernels
// that take a packed B (AMX, AVX512-BF16, the generic twin): what the model does with its weights.
// ops.pack_bf16 makes it; ops.matmul multiplies by it (the GEMM benchmarks time the kernels so).
// The kernels here that take a packed B, for messages.
std::string packed_b_kernels_here() {
  std::string out;
  for (const std::string& name : blas::usable_bf16_product_names())
    if (gemm::bf16::takes_packed_b(name)) out += (out.empty() ? "" : ", ") + name;
  return out;
}

struct PackedBf16Matrix {
  std::string kernel;
  std::unique_ptr<gemm::bf16::PackedB> b;
};

std::shared_ptr<PackedBf16Matrix> pack_bf16_py(const py::array& b, bool trans_b, const std::string& kernel) {
  const float* pb = float_input(b, "b", {-1, -1});
  require_int(b.size(), "b size");
  require_int(b.shape(0), "b's rows");  // (each side: an empty b's size is 0 whatever the other side is)
  require_int(b.shape(1), "b's columns");
  const int K = static_cast<int>(b.shape(trans_b ? 1 : 0)), N = static_cast<int>(b.shape(trans_b ? 0 : 1));
  auto packed = std::make_shared<PackedBf16Matrix>();
  if (kernel == "auto") {
    // (the one "auto" takes for many rows; an empty B packs for it too)
    packed->kernel = blas::bf16_packed_b_kernel(1 << 20, std::max(N, 1), std::max(K, 1));
    if (packed->kernel.empty())
      throw py::value_error("no kernel that takes a packed B runs bf16 products here (the products are \"" +
                            blas::bf16_products() + "\"): name one of " + packed_b_kernels_here());
  } else {
    const std::vector<std::string> here = blas::usable_bf16_product_names();
    if (!gemm::bf16::takes_packed_b(kernel) || std::find(here.begin(), here.end(), kernel) == here.end())
      throw py::value_error("kernel must be \"auto\" or one of " + packed_b_kernels_here() + ", got \"" + kernel +
                            "\"");
    packed->kernel = kernel;
  }
  py::gil_scoped_release nogil;
  packed->b.reset(trans_b ? new gemm::bf16::PackedB(pb, K, N, 1, K) : new gemm::bf16::PackedB(pb, K, N, N, 1));
  return packed;
}

// op(a) [M, K] @ packed [K, N] on the kernel it was packed for; with c: c += the product, in place.
py::array matmul_packed_py(const py::array& a, const PackedBf16Matrix& packed, bool trans_a,
                           std::optional<py::array> c) {
  const int K = packed.b->K(), N = packed.b->N();
  const float* pa = float_input(a, "a", trans_a ? std::vector<py::ssize_t>{K, -1} : std::vector<py::ssize_t>{-1, K});
  const py::ssize_t M = a.shape(trans_a ? 1 : 0);
  require_int(M, "rows of the product");
  py::array out = c ? *c : py::array(py::array_t<float>({M, static_cast<py::ssize_t>(N)}));
  float* o = c ? float_output(out, "c", {M, N}) : static_cast<float*>(out.mutable_data());
  if (c) require_disjoint(out, "c", a, "a");  // (A's blocks are packed as the product goes)
  const long lda = a.shape(1);
  py::gil_scoped_release nogil;
  if (K == 0) {  // (an empty sum: C = 0, or C stays)
    if (!c) std::fill_n(o, static_cast<size_t>(M) * N, 0.0f);
    return out;
  }
  gemm::bf16::multiply_packed(packed.kernel, pa, static_cast<int>(M), trans_a ? 1 : lda, trans_a ? lda : 1, *packed.b,
                              o, N, c.has_value());
  return out;
}

void round_bf16_in_place_py(py::array& x) {
  std::vector<py::ssize_t> dims(x.ndim(), -1);
  float* p = float_output(x, "x", dims);
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  round_to_bf16(p, p, n);
}

// ---- vectorised math, exposed so tests can measure its error --------------------------------------

py::array vecmath_py(const std::string& name, const py::array& x) {
  const float* in = float_input(x, "x", {-1});
  const VecMath function = name == "exp" ? VecMath::kExp : name == "sigmoid" ? VecMath::kSigmoid
                           : name == "tanh" ? VecMath::kTanh
                                            : throw py::value_error("unknown function '" + name + "' (exp, sigmoid or tanh)");
  auto out = new_float_array({x.shape(0)});
  float* o = out.mutable_data();
  py::gil_scoped_release nogil;
  apply_vecmath(function, o, in, x.shape(0));
  return std::move(out);
}

py::dict build_info() {
  const runtime::BuildFacts facts = runtime::build_facts();
  py::dict info;
  info["version"] = facts.version;
  info["compiler"] = facts.compiler;
  info["isa_flags"] = facts.isa_flags;
  info["isa"] = facts.isa;
  info["kernels_isa"] = kernels_isa();
  info["kernels_isas"] = compiled_isas();
  info["blas"] = blas::backend_name();
  info["blas_large_products"] = blas::large_products_backend_name();
  info["one_row_products"] = blas::one_row_products_on_ptbfast() ? "ptbfast" : "blas";
  info["one_row_recurrent_products"] = info["one_row_products"];  // (its former name)
  info["blas_threads"] = blas::num_threads();
  info["openmp_threads"] = runtime::num_threads();
  info["openmp_thread_limit"] = runtime::thread_limit();  // (0: none)
  info["openmp_dynamic"] = runtime::dynamic_threads();
  info["openmp_version"] = facts.openmp_version;
  const std::string heap_policy = heap::policy();
  info["malloc"] = heap_policy.empty() ? "the C library's own policy" : heap_policy;
  info["cpu_vendor"] = cpu_vendor();
  info["amx_permission"] = amx_permission();
  py::list features;  // the CPU's bf16 matrix features, by /proc/cpuinfo's names (CPUID + XGETBV here)
  if (cpu_has_amx_bf16()) features.append("amx_bf16");
  if (cpu_has_avx512_bf16()) features.append("avx512_bf16");
  if (features.empty()) features.append("none");
  info["cpu_matrix_features"] = features;
  info["bf16_products"] = blas::bf16_products_description();
  // The LSTM's recurrent products (their weights packed once per time loop): ptbfast's kernel, or SGEMM.
  const std::string recurrent = blas::bf16_recurrent_kernel();
  info["bf16_recurrent_products"] = recurrent.empty() ? "sgemm" : recurrent;
  const std::string one_row = blas::bf16_recurrent_kernel(1);  // (batch 1: TF's test pass, generation)
  info["bf16_recurrent_products_of_one_row"] = one_row.empty() ? "sgemm" : one_row;
  info["bf16_instructions"] = blas::bf16_products_use_bf16_instructions();
  info["bf16_matrix_engine"] = info["bf16_instructions"];  // (its first name, kept for old readers)
  py::dict kernels;  // the bf16 GEMM table: name -> usable here
  const std::vector<std::string> usable = blas::usable_bf16_product_names();
  for (const std::string& name : blas::bf16_product_names())
    kernels[name.c_str()] = std::find(usable.begin(), usable.end(), name) != usable.end();
  info["bf16_kernels"] = kernels;
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ptbfast C++ kernels (float32, OpenMP + SIMD, BLAS for matrix products)";
  runtime::init();
  m.attr("OUTPUT_BLOCK_FLOATS") = kOutputBlockFloats;

  m.def("build_info", &build_info, "Compiler, ISA flags, BLAS backend and thread counts of this build.");
  m.attr("MAX_THREADS") = runtime::kMaxThreads;
  m.def("set_num_threads", &runtime::set_num_threads, py::arg("n"),
        "Threads for ptbfast's kernels: OpenMP regions started from the calling thread (other "
        "Python threads keep their own count) and the BLAS libraries (process-wide).");
  m.def("get_num_threads", &runtime::num_threads);
  m.def("keep_freed_blocks", &heap::keep_freed_blocks, py::arg("bytes"),
        "Blocks below `bytes` from glibc's heap, kept there when freed (its mmap and trim thresholds); "
        "returns the mmap threshold in effect, 0 where nothing changed (not glibc's malloc)");
  m.def("_advise_huge_pages", [](py::array& a) { heap::advise_huge_pages(a.mutable_data(), a.nbytes()); },
        py::arg("a"), "heap::advise_huge_pages on a's memory (for tests)");

  m.def("embedding_forward", &embedding_forward_py, py::arg("params"), py::arg("ids"),
        "params[ids]: shape ids.shape + (H,)");
  m.def("embedding_backward_sparse", &embedding_backward_sparse_py, py::arg("d_out"), py::arg("ids"),
        "(unique_ids ascending int64 [U], summed rows float32 [U, H]); deterministic");
  m.def("embedding_backward_dense", &embedding_backward_dense_py, py::arg("d_params"), py::arg("d_out"),
        py::arg("ids"), py::arg("scale") = 1.0f,
        "d_params[V, H] += scale * scatter-add of d_out by ids, in place; deterministic");
  m.def("sum_of_squares", &sum_of_squares_py, py::arg("x"),
        "sum of x**2 over a float32 array, accumulated in double (the global norm's square)");
  m.def("philox_uniform", &philox_uniform_py, py::arg("out"), py::arg("seed"), py::arg("stream"),
        "out (float32, written in place) = uniform floats in [0, 1) of Philox4x32-10 stream `stream` under `seed`");
  m.def("dropout_mask", &dropout_mask_py, py::arg("out"), py::arg("seed"), py::arg("stream"), py::arg("keep_prob"),
        py::arg("scale"), "out (float32, in place) = scale where philox_uniform's float < keep_prob, else 0");
  m.def("axpy", &axpy_py, py::arg("y"), py::arg("x"), py::arg("alpha"), "y += alpha * x in place (float32)");

  py::class_<FrozenWeights, Frozen>(m, "FrozenWeights",
                                    "bf16 weights packed once for the losses of a frozen model (freeze_*_weights_bf16)")
      .def_property_readonly("nbytes", &FrozenWeights::bytes, "bytes of packed weights held");
  m.def("freeze_lstm_weights_bf16", &freeze_lstm_weights_bf16_py, py::arg("kernel"), py::arg("input_size"),
        py::arg("rounded_copies") = false,
        "An LSTM kernel [input_size + H, 4H]'s bf16 packs for lstm_forward(..., bf16=True, frozen=...): "
        "made once, used where a call would pack the same (the same results); rounded_copies: where the "
        "products are SGEMMs, the weights rounded once instead");
  m.def("freeze_output_weights_bf16", &freeze_output_weights_bf16_py, py::arg("softmax_w"),
        py::arg("transposed") = false,
        "softmax_w [H, V] (transposed: the embedding [V, H]) packed once in bf16 for output_layer_forward(..., "
        "frozen=...), or None where no kernel here takes packed weights");
  m.def("lstm_forward", &lstm_forward_py, py::arg("x"), py::arg("c0"), py::arg("h0"), py::arg("kernel"),
        py::arg("bias"), py::arg("forget_bias") = 0.0f, py::arg("bf16") = false, py::arg("frozen") = py::none(),
        "One LSTM layer over T steps: (h_all [T,B,H], c_all [T,B,H], gates [T,B,4H]); bf16: h_t rounded "
        "to bf16 as made, the kernel rounded for the products (x by the caller); frozen: its packs from "
        "freeze_lstm_weights_bf16");
  m.def("lstm_backward", &lstm_backward_py, py::arg("d_h_all"), py::arg("d_c_T"), py::arg("d_h_T"), py::arg("x"),
        py::arg("c0"), py::arg("h0"), py::arg("kernel"), py::arg("h_all"), py::arg("c_all"), py::arg("gates"),
        py::arg("bf16") = false,
        "Backward through time: (dx, dc0, dh0, dkernel, dbias); bf16: gate gradients rounded for the products");

  m.def("output_layer_forward", &output_layer_forward_py, py::arg("h"), py::arg("softmax_w"),
        py::arg("softmax_b"), py::arg("targets"), py::arg("block_rows") = 0, py::arg("transposed") = false,
        py::arg("block_columns") = 0, py::arg("bf16") = false, py::arg("w_is_bf16") = false,
        py::arg("frozen") = py::none(),
        "(sum of losses as float, losses [N]) of softmax cross-entropy of h @ w + b "
        "(h @ w.T + b with transposed, w then [V, H]); logits are made block_rows x block_columns "
        "at a time (0: about 16 MiB); bf16: w rounded to bf16 for the product (h by the caller), "
        "or with w_is_bf16 read as it is (the caller rounded it), or frozen: w packed by "
        "freeze_output_weights_bf16");
  m.def("output_layer_forward_backward", &output_layer_forward_backward_py, py::arg("h"), py::arg("softmax_w"),
        py::arg("softmax_b"), py::arg("targets"), py::arg("d_loss"), py::arg("block_rows") = 0,
        py::arg("transposed") = false, py::arg("block_columns") = 0, py::arg("bf16") = false,
        "(total, losses, dh, dw, db): gradients of d_loss * sum(losses); block_columns < V: two passes "
        "over column chunks (0: chosen by the vocabulary size); bf16: w and d_logits rounded for the products "
        "(h by the caller)");

  m.def("round_bf16", &round_bf16_py, py::arg("x"),
        "x rounded to bfloat16 (nearest even), as float32 with the low 16 bits zero; NaN stays NaN");
  m.def("set_bf16_products", &blas::set_bf16_products, py::arg("name"),
        "How bf16 products run: \"auto\" (per product, the first usable kernel of the bf16 GEMM table that "
        "prefers the shape) or a kernel of that table by name (bf16_product_names)");
  m.def("bf16_products", &blas::bf16_products, "The bf16 products setting: auto or a kernel's name");
  m.def("bf16_product_names", &blas::bf16_product_names,
        "The bf16 GEMM table's kernels, in the order \"auto\" tries them");
  m.def("usable_bf16_product_names", &blas::usable_bf16_product_names,
        "The bf16 GEMM table's kernels that this CPU and build can run");
  m.def("set_kernels_isa", &set_kernels_isa, py::arg("name"),
        "The instruction-set level the kernels run at (a level this build compiled and this CPU runs)");
  m.def("kernels_isa", &kernels_isa, "The instruction-set level the kernels run at");
  m.def("compiled_isas", &compiled_isas, "The levels this build compiled the kernels for, lowest first");
  m.def("supported_isas", &supported_isas, "The compiled levels this CPU runs, lowest first");
  m.def("bf16_peak_gflops", [](const std::string& kernel) {
        if (!kernel.empty() && kernel != "amx" && kernel != "avx512_bf16")
          throw py::value_error("bf16_peak_gflops measures the native kernels' instructions: amx or avx512_bf16, "
                                "got '" + kernel + "'");
        py::gil_scoped_release nogil;
        return gemm::bf16::native_peak_gflops(kernel);
      }, py::arg("kernel") = "",
      "GFLOP/s of a native bf16 kernel's instruction (amx, avx512_bf16; default: the fastest here) in "
      "independent chains on all threads (0: it does not run here)");
  m.def("bf16_product_kernel", &blas::bf16_product_kernel, py::arg("M"), py::arg("N"), py::arg("K"),
        "The kernel an M x K @ K x N bf16 product runs on under the current setting");
  m.def("bf16_kernel_for_rows", &blas::bf16_kernel_for_rows, py::arg("packed_for"), py::arg("rows"),
        "The kernel that multiplies `rows` rows by a B packed for the kernel `packed_for` under the current setting");
  m.def("bf16_recurrent_kernel", [](int rows) {
        const std::string kernel = blas::bf16_recurrent_kernel(rows);
        return kernel.empty() ? std::string("sgemm") : kernel;
      }, py::arg("rows"), "The kernel the LSTM's recurrent products of `rows` rows run on under the current setting");
  m.def("round_bf16_in_place", &round_bf16_in_place_py, py::arg("x"),
        "round_bf16, written over x (float32, C-contiguous, writable)");
  m.def("_fail_lstm_time_loop", [](int thread, int barrier) {
        if ((thread < 0) != (barrier < 0)) throw py::value_error("thread and barrier: both >= 0, or both -1");
        const long long at = thread < 0 ? 0 : time_loop_failure_code(thread, barrier);
        return time_loop_failure_at.exchange(at) != 0;
      }, py::arg("thread"), py::arg("barrier"),
      "Tests only: the LSTM time loop throws std::bad_alloc (MemoryError here) on thread `thread` before "
      "its barrier number `barrier` (one a step: the first is 0), once, as a failed allocation there would; "
      "-1, -1: not at all. Returns whether the previous such failure was still to come.");
  m.def("profile_enable", [](bool on) { profile::enabled().store(on); }, py::arg("on"),
        "Start or stop summing the kernels' time per phase (python -m ptbfast bench --profile).");
  m.def("profile_read", []() {
        py::dict out;
        for (int k = 0; k < profile::kPhases; ++k) {
          out[profile::kPhaseNames[k]] = profile::nanoseconds()[k].exchange(0) * 1e-9;
          profile::sections()[k].store(0);
        }
        return out;
      }, "Seconds per phase since the last read (and reset them and the section counts).");
  m.def("profile_sections", []() {
        py::dict out;
        for (int k = 0; k < profile::kPhases; ++k) out[profile::kPhaseNames[k]] = profile::sections()[k].load();
        return out;
      }, "How many timed sections each phase has added since the last profile_read.");
  m.def("matmul", &matmul_py, py::arg("a"), py::arg("b"), py::arg("bf16") = false, py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("c") = py::none(),
        "op(a) [M, K] @ op(b) [K, N] through ptbfast's products (bf16: the bf16 products path); with c, "
        "c += the product in place");
  py::class_<PackedBf16Matrix, std::shared_ptr<PackedBf16Matrix>>(
      m, "PackedBf16Matrix", "a [K, N] matrix packed once in bf16 for matmul_packed on one kernel (pack_bf16)")
      .def_property_readonly("shape", [](const PackedBf16Matrix& p) { return py::make_tuple(p.b->K(), p.b->N()); })
      .def_property_readonly("kernel", [](const PackedBf16Matrix& p) { return p.kernel; })
      .def_property_readonly("nbytes", [](const PackedBf16Matrix& p) {
        return gemm::bf16::PackedB::words_for(p.b->K(), p.b->N()) * sizeof(uint32_t);
      });
  m.def("pack_bf16", &pack_bf16_py, py::arg("b"), py::arg("trans_b") = false, py::arg("kernel") = "auto",
        "op(b) [K, N] rounded to bf16 and packed once for matmul_packed on `kernel` (\"auto\": the kernel that "
        "takes a packed B which bf16 products of many rows run on)");
  m.def("matmul_packed", &matmul_packed_py, py::arg("a"), py::arg("packed"), py::arg("trans_a") = false,
        py::arg("c") = py::none(),
        "op(a) [M, K] @ packed [K, N] on the kernel it was packed for (a rounded to bf16 for it); with c, c += "
        "the product in place");
  m.attr("BF16_PACKED_B_KERNELS") = [] {
    std::vector<std::string> out;
    for (const std::string& name : blas::bf16_product_names())
      if (gemm::bf16::takes_packed_b(name)) out.push_back(name);
    return out;
  }();
  m.def("set_large_sgemm_library", [](const std::string& name) {
        try {
          blas::set_large_products_library(name);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      }, py::arg("name"), "The BLAS library for float32 products large on every side: auto, mkl or openblas");
  const auto set_one_row_products = [](const std::string& name) {
    try {
      blas::set_one_row_products(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  };
  m.def("set_one_row_products", set_one_row_products, py::arg("name"),
        "Where float32 products of one row run (batch 1, generation): auto, ptbfast or blas");
  m.def("one_row_products", &blas::one_row_products);
  m.def("set_one_row_recurrent_products", set_one_row_products, py::arg("name"), "set_one_row_products' former name");
  m.def("one_row_recurrent_products", &blas::one_row_products, "one_row_products' former name");
  m.def("_one_row_recurrent_product_runs", &blas::one_row_recurrent_product_runs,
        "lstm_forward's calls so far that ran batch 1's recurrent products on ptbfast's loops (for tests)");
  m.def("_one_row_sgemm_runs", &blas::one_row_sgemm_runs,
        "SGEMM's products of one row so far that ran on ptbfast's loops (for tests)");
  m.def("_row_product", [](py::array& y, const py::array& x, const py::array& w, bool w_transposed, float alpha,
                           float beta) {
        // (for tests: the kernel itself, at the active level, with a w wider than the product)
        float* py_ = float_output(y, "y", {-1});
        const float* px = float_input(x, "x", {-1});
        const float* pw = float_input(w, "w", {-1, -1});
        const py::ssize_t N = y.shape(0), K = x.shape(0);
        if (w_transposed ? (w.shape(0) < N || w.shape(1) < K) : (w.shape(0) != K || w.shape(1) < N))
          throw py::value_error("w must hold the product's " + std::string(w_transposed ? "[N, K]" : "[K, N]") +
                                " in its first rows and columns, got " + shape_str(w));
        require_int(w.size(), "w size");
        require_disjoint(y, "y", x, "x");
        require_disjoint(y, "y", w, "w");
        const int ldw = static_cast<int>(w.shape(1));
        py::gil_scoped_release nogil;
        row_product(py_, px, pw, static_cast<int>(K), static_cast<int>(N), ldw, w_transposed, alpha, beta);
      }, py::arg("y"), py::arg("x"), py::arg("w"), py::arg("w_transposed"), py::arg("alpha"), py::arg("beta"),
      "y = alpha * x @ op(w)[:K, :N] + beta * y on ptbfast's loop of one row (for tests)");
  m.def("_sgemm_library", &blas::sgemm_library, py::arg("M"), py::arg("N"), py::arg("K"),
        "The library SGEMM sends an M x K @ K x N product to (for tests)");
  m.attr("PACKED_MIN_USES") = blas::kPackedMinUses;
  m.attr("SGEMM_LARGE_SIDE") = blas::kLargeSide;
  m.def("_packed_matmul", [](const py::array& a, const py::array& b, int uses) {
        const float* pa = float_input(a, "a", {-1, -1});
        const float* pb = float_input(b, "b", {a.shape(1), -1});
        for (const py::ssize_t side : {a.shape(0), a.shape(1), b.shape(1)}) require_int(side, "a side of the product");
        const int M = static_cast<int>(a.shape(0)), K = static_cast<int>(a.shape(1)), N = static_cast<int>(b.shape(1));
        py::array_t<float> out({a.shape(0), b.shape(1)});
        float* o = out.mutable_data();
        bool packed = false;
        {
          py::gil_scoped_release nogil;
          const blas::PackedB packed_b(false, M, N, K, pb, N, uses);
          packed = packed_b.packed();
          packed_b.gemm(pa, K, 0.0f, o, N);
        }
        return py::make_tuple(out, packed);
      }, py::arg("a"), py::arg("b"), py::arg("uses"),
      "(a @ b through blas::PackedB prepared for `uses` products, whether it packed b) (for tests)");
  m.def("_products_of_written_a", [](const std::string& kernel, const py::array& a, const py::array& b,
                                     const py::array& y, int run) {
        // a written into a PackedA `run` columns at a time (as the LSTM backward writes its gate
        // gradients), then a @ b (multiply_packed_a) and y @ a (a packed as B by pack_transposed).
        namespace gb = gemm::bf16;
        if (!gb::takes_packed_b(kernel)) throw std::invalid_argument("not a kernel that takes a packed B: " + kernel);
        const std::vector<std::string> here = blas::usable_bf16_product_names();
        if (std::find(here.begin(), here.end(), kernel) == here.end())
          throw std::invalid_argument(kernel + " cannot run here");
        if (run < 1) throw std::invalid_argument("run must be positive");
        const float* pa = float_input(a, "a", {-1, -1});
        const float* pb = float_input(b, "b", {a.shape(1), -1});
        const float* py_ = float_input(y, "y", {-1, a.shape(0)});
        for (const py::ssize_t side : {a.shape(0), a.shape(1), b.shape(1), y.shape(0)})
          require_int(side, "a side of the products");
        const int M = static_cast<int>(a.shape(0)), K = static_cast<int>(a.shape(1)), N = static_cast<int>(b.shape(1)),
                  P = static_cast<int>(y.shape(0));
        py::array_t<float> ab({a.shape(0), b.shape(1)}), ya({y.shape(0), a.shape(1)});
        float* pab = ab.mutable_data();
        float* pya = ya.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::unique_ptr<uint32_t[]> a_storage, b_storage;
          gb::PackedA written(kernel, M, K, gb::aligned_words(a_storage, gb::PackedA::words_for(kernel, M, K)));
          std::vector<float> rounded(static_cast<size_t>(K));
          for (int m = 0; m < M; ++m) {
            for (int k = 0; k < K; ++k) rounded[k] = round_bf16(pa[static_cast<long>(m) * K + k]);
            for (int k0 = 0; k0 < K; k0 += run) written.store(m, k0, rounded.data() + k0, std::min(run, K - k0));
          }
          gb::multiply_packed_a(written, pb, N, N, 1, pab, N, false);
          gb::PackedB transposed(M, K, gb::aligned_words(b_storage, gb::PackedB::words_for(M, K)),
                                 gb::PackedB::WrittenByCaller{});
          gb::pack_transposed(written, transposed);
          gb::multiply_packed(kernel, py_, P, M, 1, transposed, pya, K, false);
        }
        return py::make_tuple(ab, ya);
      }, py::arg("kernel"), py::arg("a"), py::arg("b"), py::arg("y"), py::arg("run"),
      "(a @ b, y @ a) with a written into the kernel's packed A layout (for tests)");
  m.def("_vecmath", &vecmath_py, py::arg("name"), py::arg("x"), "exp/sigmoid/tanh approximations (for tests)");
}
