// oneDNN 2.x/3.x convolutions as XLA FFI custom calls: genjax's conv_backend='onednn' on CPU.
//
// Three handlers cover both convolutions and transposed convolutions (a transposed conv is the
// input-gradient of the conv that maps its output space back to its input space):
//   genjax_onednn_conv_fwd          src, weights    -> dst
//   genjax_onednn_conv_bwd_data     diff_dst, weights -> diff_src
//   genjax_onednn_conv_bwd_weights  src, diff_dst   -> diff_weights
// Activations are NHWC. Weights are (kh, kw, A, B) row-major: (kh, kw, in, out) of the conv
// (HWIO) when transposed == false, (kh, kw, out, in) when transposed == true (a transposed
// conv's own HWIO kernel). The three shapes are read from the buffers; the attributes give the
// strides and the top/bottom/left/right padding. Primitives are built once per geometry and
// cached; weights are reordered into the primitive's preferred layout on every call.
//
// Forward convolutions with few output pixels and a large kernel (GemmForward) run as im2col +
// one GEMM (oneDNN's matmul) instead of the convolution primitive: oneDNN 2.6's brgconv blocks
// over output columns, and with four of them it ran DCGAN-64's 256->512, 8->4 px conv at 280
// GFLOP/s (15.8 ms at batch 64 on the 2-core AVX-512 CPU here), the GEMM at 430 (9.9 ms with the
// im2col). A conv to a 1x1 output is a GEMM outright; where its kernel covers the unpadded input,
// the input rows are the columns.
//
// A backward-weights call runs alone (RunExclusive): no other oneDNN call of the process runs
// while it does. XLA's CPU runtime may run two independent custom calls at once, each with its
// own OpenMP team of a thread per core; when a backward-weights call shared the 2 cores here
// with another call, bfloat16 DCGAN-64 steps sometimes took ~800 instead of ~290 ms (a traced
// step: two 117 ms backward-weights calls overlapping took 507 and 464 ms). Forward and
// backward-data calls may still overlap one another: serialising every call made float32
// DCGAN-64 up to 25 ms a step slower.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

static_assert(DNNL_VERSION_MAJOR == 2 || DNNL_VERSION_MAJOR == 3,
              "genjax's oneDNN kernels use the oneDNN 2.x or 3.x API");

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Kind : int { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

using Key = std::tuple<int, int, std::vector<int64_t>, bool>;

struct Im2col {  // the forward conv as a GEMM: rows (b, oy, ox), columns (ky, kx, c)
  bool on = false;  // else the input is the column matrix itself
  int64_t b, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, elem;
  int64_t Rows() const { return b * oh * ow; }
  int64_t Cols() const { return kh * kw * c; }
};

struct Primitive {
  dnnl::primitive prim;
  memory::desc src, dst, weights_user, weights, scratch;
  dnnl::reorder weights_reorder;  // user -> primitive layout (primitive -> user for kBwdWeights)
  memory::desc reorder_scratch;
  bool reorder = false;
  // kFwd as a matmul: src and dst are then the (rows, K) and (rows, N) matrices, gemm_weights
  // the (K, N) view of the weights in their HWIO layout.
  bool gemm = false;
  memory::desc gemm_weights;
  Im2col im2col;
};

memory::dims Nchw(ffi::AnyBuffer::Dimensions d) { return {d[0], d[3], d[1], d[2]}; }

bool GemmForward(int64_t oh, int64_t ow, int64_t k, int64_t n) {
  return oh * ow == 1 || (oh * ow <= 16 && k * n >= (int64_t{1} << 21));
}

// Writes the im2col rows of an NHWC input (zeros where a tap falls on padding).
void FillColumns(const Im2col& g, const uint8_t* src, uint8_t* cols) {
  const int64_t row = g.Cols() * g.elem, pixel = g.c * g.elem;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.b; ++n) {
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        uint8_t* out = cols + ((n * g.oh + oy) * g.ow + ox) * row;
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          const int64_t iy = oy * g.sh - g.pt + ky;
          for (int64_t kx = 0; kx < g.kw; ++kx, out += pixel) {
            const int64_t ix = ox * g.sw - g.pl + kx;
            if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) std::memset(out, 0, pixel);
            else std::memcpy(out, src + ((n * g.h + iy) * g.w + ix) * pixel, pixel);
          }
        }
      }
    }
  }
}

std::shared_ptr<Primitive> Build(Kind kind, memory::data_type dt, const memory::dims& src,
                                 const memory::dims& dst, const memory::dims& w,
                                 bool transposed, const memory::dims& strides,
                                 const memory::dims& pad_l, const memory::dims& pad_r) {
  const int64_t kh = w[0], kw = w[1], a = w[2], b = w[3];
  const int64_t oc = transposed ? a : b, ic = transposed ? b : a;
  if (ic != src[1] || oc != dst[1])
    throw std::runtime_error("weights (" + std::to_string(kh) + ", " + std::to_string(kw) + ", " +
                             std::to_string(a) + ", " + std::to_string(b) +
                             ") do not match the activations' channels");
  // Logical OIHW dims over the (kh, kw, A, B) buffer.
  memory::dims w_dims = {oc, ic, kh, kw};
  memory::dims w_strides = transposed ? memory::dims{b, 1, kw * a * b, a * b}
                                      : memory::dims{1, b, kw * a * b, a * b};
  auto p = std::make_shared<Primitive>();
  p->src = memory::desc(src, dt, memory::format_tag::nhwc);
  p->dst = memory::desc(dst, dt, memory::format_tag::nhwc);
  p->weights_user = memory::desc(w_dims, dt, w_strides);
  memory::desc w_any(w_dims, dt, memory::format_tag::any);
  const memory::desc w_hwio(w_dims, dt, memory::format_tag::hwio);  // (K, N) row-major
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto alg = dnnl::algorithm::convolution_direct;
  auto& eng = Engine();
  const int64_t oh = dst[2], ow = dst[3];
  if (kind == kFwd && GemmForward(oh, ow, kh * kw * ic, oc)) {
    const bool direct = oh == 1 && ow == 1 && kh == src[2] && kw == src[3] && pad_l[0] == 0 &&
                        pad_l[1] == 0;
    const Im2col& g = p->im2col = {!direct, src[0], src[2], src[3], ic, oh, ow, kh, kw,
                                   strides[0], strides[1], pad_l[0], pad_l[1],
                                   static_cast<int64_t>(memory::data_type_size(dt))};
    const auto ab = memory::format_tag::ab;
    p->src = memory::desc({g.Rows(), g.Cols()}, dt, ab);
    p->dst = memory::desc({g.Rows(), oc}, dt, ab);
    p->gemm_weights = memory::desc({g.Cols(), oc}, dt, ab);
#if DNNL_VERSION_MAJOR >= 3
    dnnl::matmul::primitive_desc pd(eng, p->src, p->gemm_weights, p->dst, attr);
#else
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p->src, p->gemm_weights, p->dst), attr,
                                    eng);
#endif
    p->prim = dnnl::matmul(pd);
    p->gemm = true;
    p->weights = w_hwio;
    p->scratch = pd.scratchpad_desc();
  } else {
    // The forward primitive, and the hint the backward ones are built against.
#if DNNL_VERSION_MAJOR >= 3
    dnnl::convolution_forward::primitive_desc hint(eng, dnnl::prop_kind::forward_training, alg,
                                                   p->src, w_any, p->dst, strides, pad_l,
                                                   pad_r, attr);
#else
    dnnl::convolution_forward::primitive_desc hint(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p->src, w_any,
                                        p->dst, strides, pad_l, pad_r), attr, eng);
#endif
    if (kind == kFwd) {
      p->prim = dnnl::convolution_forward(hint);
      p->weights = hint.weights_desc();
      p->scratch = hint.scratchpad_desc();
    } else if (kind == kBwdData) {
#if DNNL_VERSION_MAJOR >= 3
      dnnl::convolution_backward_data::primitive_desc pd(eng, alg, p->src, w_any, p->dst,
                                                         strides, pad_l, pad_r, hint, attr);
#else
      dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(
              alg, p->src, w_any, p->dst, strides, pad_l, pad_r), attr, eng, hint);
#endif
      p->prim = dnnl::convolution_backward_data(pd);
      p->weights = pd.weights_desc();
      p->scratch = pd.scratchpad_desc();
    } else {
#if DNNL_VERSION_MAJOR >= 3
      dnnl::convolution_backward_weights::primitive_desc pd(eng, alg, p->src, w_any, p->dst,
                                                            strides, pad_l, pad_r, hint, attr);
#else
      dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(alg, p->src, w_any, p->dst, strides, pad_l,
                                                   pad_r), attr, eng, hint);
#endif
      p->prim = dnnl::convolution_backward_weights(pd);
      p->weights = pd.diff_weights_desc();
      p->scratch = pd.scratchpad_desc();
    }
  }
  p->reorder = p->weights != p->weights_user;
  if (p->reorder) {
    // In the user's scratchpad mode (attr), as the primitive itself: in oneDNN's default library
    // mode a primitive may run only in the thread that created it (here the trace-time probe's),
    // never in two at once, and XLA runs these calls on its own threads, two at a time.
    const bool back = kind == kBwdWeights;
    dnnl::reorder::primitive_desc pd(eng, back ? p->weights : p->weights_user, eng,
                                     back ? p->weights_user : p->weights, attr);
    p->weights_reorder = dnnl::reorder(pd);
    p->reorder_scratch = pd.scratchpad_desc();
  }
  return p;
}

std::shared_ptr<Primitive> Get(Kind kind, memory::data_type dt, const memory::dims& src,
                               const memory::dims& dst, const memory::dims& w,
                               bool transposed, const memory::dims& strides,
                               const memory::dims& pad_l, const memory::dims& pad_r) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<Primitive>> cache;
  std::vector<int64_t> geometry(src.begin(), src.end());
  geometry.insert(geometry.end(), dst.begin(), dst.end());
  geometry.insert(geometry.end(), w.begin(), w.end());
  for (const auto* v : {&strides, &pad_l, &pad_r}) geometry.insert(geometry.end(), v->begin(), v->end());
  Key key{kind, static_cast<int>(dt), geometry, transposed};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto p = Build(kind, dt, src, dst, w, transposed, strides, pad_l, pad_r);
  cache.emplace(key, p);
  return p;
}

// Tests make the next calls fail (GenjaxOnednnInjectFailures) to check how a failing call ends a
// training run.
std::atomic<int64_t> injected_failures{0};

bool FailureInjected() {
  int64_t left = injected_failures.load();
  while (left > 0 && !injected_failures.compare_exchange_weak(left, left - 1)) {}
  return left > 0;
}

// A call that fails at run time does not return an error: on several devices XLA would run the
// other devices' parts of the step on into a collective that the failed one never joins, and
// its rendezvous ends the process after a timeout (an abort, not an exception). The call fills
// its result with NaN instead and keeps its error for GenjaxOnednnTakeFailure, which the caller
// checks when it next waits for a step (genjax.kernels.raise_failure).
std::mutex failure_mu;
std::string failure;  // the first since the last GenjaxOnednnTakeFailure; "" if none

void Fail(const std::string& what, ffi::AnyBuffer out) {
  {
    std::lock_guard<std::mutex> lock(failure_mu);
    if (failure.empty()) failure = "onednn conv: " + what;
  }
  const size_t n = out.element_count();
  if (out.element_type() == ffi::DataType::BF16) {
    std::fill_n(static_cast<uint16_t*>(out.untyped_data()), n, uint16_t{0x7FC0});
  } else {
    std::fill_n(static_cast<uint32_t*>(out.untyped_data()), n, uint32_t{0x7FC00000});
  }
}

memory::data_type DataType(int bf16) {
  return bf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

// One call: (first, second) are the two inputs, out the result, in the roles that `kind` gives.
ffi::Error Run(Kind kind, ffi::AnyBuffer first, ffi::AnyBuffer second, ffi::AnyBuffer out,
               int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
               bool transposed) {
  const auto type = first.element_type();
  if (second.element_type() != type || out.element_type() != type)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: mixed dtypes");
  if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: float32 or bfloat16 only");
  // Which buffer is which.
  ffi::AnyBuffer::Dimensions src_d = first.dimensions(), dst_d = out.dimensions(),
                             w_d = second.dimensions();
  if (kind == kBwdData) { src_d = out.dimensions(); dst_d = first.dimensions(); }
  if (kind == kBwdWeights) { dst_d = second.dimensions(); w_d = out.dimensions(); }
  if (src_d.size() != 4 || dst_d.size() != 4 || w_d.size() != 4)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: rank-4 NHWC/HWIO only");
  try {
    if (FailureInjected()) throw std::runtime_error("injected failure (a test's)");
    auto p = Get(kind, DataType(type == ffi::DataType::BF16), Nchw(src_d), Nchw(dst_d),
                 memory::dims(w_d.begin(), w_d.end()), transposed, {sh, sw}, {pt, pl}, {pb, pr});
    auto& eng = Engine();
    dnnl::stream stream(eng);
    std::unique_ptr<uint8_t[]> scratch_buf(new uint8_t[p->scratch.get_size()]);  // no zero-fill
    memory scratch(p->scratch, eng, scratch_buf.get());
    void* w_ptr = kind == kBwdWeights ? out.untyped_data() : second.untyped_data();
    memory w_user(p->weights_user, eng, w_ptr);
    memory w = p->reorder ? memory(p->weights, eng) : w_user;
    std::unique_ptr<uint8_t[]> reorder_buf(new uint8_t[p->reorder_scratch.get_size()]);
    auto reorder = [&](const memory& from, const memory& to) {
      p->weights_reorder.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to},
          {DNNL_ARG_SCRATCHPAD, memory(p->reorder_scratch, eng, reorder_buf.get())}});
    };
    if (p->reorder && kind != kBwdWeights) reorder(w_user, w);
    if (p->gemm) {
      const Im2col& g = p->im2col;
      std::unique_ptr<uint8_t[]> cols;
      if (g.on) {
        cols.reset(new uint8_t[g.Rows() * g.Cols() * g.elem]);
        FillColumns(g, static_cast<const uint8_t*>(first.untyped_data()), cols.get());
      }
      p->prim.execute(stream, {
          {DNNL_ARG_SRC, memory(p->src, eng, g.on ? cols.get() : first.untyped_data())},
          {DNNL_ARG_WEIGHTS, memory(p->gemm_weights, eng, w.get_data_handle())},
          {DNNL_ARG_DST, memory(p->dst, eng, out.untyped_data())},
          {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (kind == kFwd) {
      p->prim.execute(stream, {{DNNL_ARG_SRC, memory(p->src, eng, first.untyped_data())},
                               {DNNL_ARG_WEIGHTS, w},
                               {DNNL_ARG_DST, memory(p->dst, eng, out.untyped_data())},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (kind == kBwdData) {
      p->prim.execute(stream, {{DNNL_ARG_DIFF_DST, memory(p->dst, eng, first.untyped_data())},
                               {DNNL_ARG_WEIGHTS, w},
                               {DNNL_ARG_DIFF_SRC, memory(p->src, eng, out.untyped_data())},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      p->prim.execute(stream, {{DNNL_ARG_SRC, memory(p->src, eng, first.untyped_data())},
                               {DNNL_ARG_DIFF_DST, memory(p->dst, eng, second.untyped_data())},
                               {DNNL_ARG_DIFF_WEIGHTS, w},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
      if (p->reorder) reorder(w, w_user);
    }
    stream.wait();
  } catch (const std::exception& e) {
    Fail(e.what(), out);
  }
  return ffi::Error::Success();
}

// Backward-weights calls hold the lock exclusively, the others shared (see the top of the file).
// Nothing waits on anything else while holding it, so this cannot deadlock, even with many CPU
// devices and collectives.
ffi::Error RunExclusive(Kind kind, ffi::AnyBuffer first, ffi::AnyBuffer second,
                        ffi::AnyBuffer out, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                        int64_t pl, int64_t pr, bool transposed) {
  static std::shared_mutex mu;
  if (kind == kBwdWeights) {
    std::unique_lock<std::shared_mutex> alone(mu);
    return Run(kind, first, second, out, sh, sw, pt, pb, pl, pr, transposed);
  }
  std::shared_lock<std::shared_mutex> shared(mu);
  return Run(kind, first, second, out, sh, sw, pt, pb, pl, pr, transposed);
}

template <Kind kind>
ffi::Error Handler(ffi::AnyBuffer first, ffi::AnyBuffer second, ffi::Result<ffi::AnyBuffer> out,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
                   bool transposed) {
  return RunExclusive(kind, first, second, *out, sh, sw, pt, pb, pl, pr, transposed);
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<int64_t>("sh")
      .Attr<int64_t>("sw")
      .Attr<int64_t>("pt")
      .Attr<int64_t>("pb")
      .Attr<int64_t>("pl")
      .Attr<int64_t>("pr")
      .Attr<bool>("transposed");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenjaxOnednnConvFwd, Handler<kFwd>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenjaxOnednnConvBwdData, Handler<kBwdData>, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenjaxOnednnConvBwdWeights, Handler<kBwdWeights>, Binding());

// Trace-time checks from Python (ctypes), so that a primitive this CPU's oneDNN cannot create
// is found before a step runs, never inside one.

// Builds (and caches) the primitive of one call; 0 if it can be created, else 1 with oneDNN's
// reason in `msg`. dims: src NCHW, dst NCHW, weights (kh, kw, A, B); geo: sh, sw, pt, pb, pl, pr.
extern "C" int GenjaxOnednnConvProbe(int kind, int bf16, const int64_t* dims, int transposed,
                                     const int64_t* geo, char* msg, int64_t msg_len) {
  try {
    Get(static_cast<Kind>(kind), DataType(bf16), memory::dims(dims, dims + 4),
        memory::dims(dims + 4, dims + 8), memory::dims(dims + 8, dims + 12), transposed != 0,
        {geo[0], geo[1]}, {geo[2], geo[4]}, {geo[3], geo[5]});
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(msg, msg_len, "%s", e.what());
    return 1;
  }
}

// "oneDNN <major.minor.patch> <ISA it dispatches to>" (the ISA honours ONEDNN_MAX_CPU_ISA).
extern "C" void GenjaxOnednnInfo(char* out, int64_t len) {
  const dnnl_version_t* v = dnnl_version();
  const char* isa = "other";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: isa = "sse41"; break;
    case dnnl::cpu_isa::avx: isa = "avx"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
#if DNNL_VERSION_MAJOR >= 3
    case dnnl::cpu_isa::avx2_vnni_2: isa = "avx2_vnni_2"; break;
    case dnnl::cpu_isa::avx512_core_fp16: isa = "avx512_core_fp16"; break;
    case dnnl::cpu_isa::avx512_core_amx_fp16: isa = "avx512_core_amx_fp16"; break;
#endif
    default: break;
  }
  std::snprintf(out, len, "oneDNN %d.%d.%d %s", v->major, v->minor, v->patch, isa);
}

// The next `n` custom calls fail instead of running (tests only).
extern "C" void GenjaxOnednnInjectFailures(int64_t n) { injected_failures.store(n); }

// 1 and the first run-time failure since the last call in `out` (see Fail), else 0.
extern "C" int GenjaxOnednnTakeFailure(char* out, int64_t len) {
  std::lock_guard<std::mutex> lock(failure_mu);
  if (failure.empty()) return 0;
  std::snprintf(out, len, "%s", failure.c_str());
  failure.clear();
  return 1;
}
