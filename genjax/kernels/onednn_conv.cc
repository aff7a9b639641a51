// oneDNN 2.x convolutions as XLA FFI custom calls: genjax's conv_backend='onednn' on CPU.
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

#include <cstdint>
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

static_assert(DNNL_VERSION_MAJOR == 2, "genjax's oneDNN kernels use the oneDNN 2.x API "
                                       "(Debian's libdnnl-dev)");

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
                                 const memory::dims& dst, ffi::AnyBuffer::Dimensions w,
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
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p->src, p->gemm_weights, p->dst), attr,
                                    eng);
    p->prim = dnnl::matmul(pd);
    p->gemm = true;
    p->weights = w_hwio;
    p->scratch = pd.scratchpad_desc();
  } else {
    // The forward primitive, and the hint the backward ones are built against.
    dnnl::convolution_forward::primitive_desc hint(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p->src, w_any,
                                        p->dst, strides, pad_l, pad_r), attr, eng);
    if (kind == kFwd) {
      p->prim = dnnl::convolution_forward(hint);
      p->weights = hint.weights_desc();
      p->scratch = hint.scratchpad_desc();
    } else if (kind == kBwdData) {
      dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(
              alg, p->src, w_any, p->dst, strides, pad_l, pad_r), attr, eng, hint);
      p->prim = dnnl::convolution_backward_data(pd);
      p->weights = pd.weights_desc();
      p->scratch = pd.scratchpad_desc();
    } else {
      dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(alg, p->src, w_any, p->dst, strides, pad_l,
                                                   pad_r), attr, eng, hint);
      p->prim = dnnl::convolution_backward_weights(pd);
      p->weights = pd.diff_weights_desc();
      p->scratch = pd.scratchpad_desc();
    }
  }
  p->reorder = p->weights != p->weights_user;
  if (p->reorder) {
    p->weights_reorder = kind == kBwdWeights
        ? dnnl::reorder(memory(p->weights, eng, DNNL_MEMORY_NONE),
                        memory(p->weights_user, eng, DNNL_MEMORY_NONE))
        : dnnl::reorder(memory(p->weights_user, eng, DNNL_MEMORY_NONE),
                        memory(p->weights, eng, DNNL_MEMORY_NONE));
  }
  return p;
}

std::shared_ptr<Primitive> Get(Kind kind, memory::data_type dt, const memory::dims& src,
                               const memory::dims& dst, ffi::AnyBuffer::Dimensions w,
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

// One call: (first, second) are the two inputs, out the result, in the roles that `kind` gives.
ffi::Error Run(Kind kind, ffi::AnyBuffer first, ffi::AnyBuffer second, ffi::AnyBuffer out,
               int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
               bool transposed) {
  const auto type = first.element_type();
  if (second.element_type() != type || out.element_type() != type)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: mixed dtypes");
  memory::data_type dt;
  if (type == ffi::DataType::F32) dt = memory::data_type::f32;
  else if (type == ffi::DataType::BF16) dt = memory::data_type::bf16;
  else return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: float32 or bfloat16 only");
  // Which buffer is which.
  ffi::AnyBuffer::Dimensions src_d = first.dimensions(), dst_d = out.dimensions(),
                             w_d = second.dimensions();
  if (kind == kBwdData) { src_d = out.dimensions(); dst_d = first.dimensions(); }
  if (kind == kBwdWeights) { dst_d = second.dimensions(); w_d = out.dimensions(); }
  if (src_d.size() != 4 || dst_d.size() != 4 || w_d.size() != 4)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn conv: rank-4 NHWC/HWIO only");
  try {
    auto p = Get(kind, dt, Nchw(src_d), Nchw(dst_d), w_d, transposed, {sh, sw}, {pt, pl},
                 {pb, pr});
    auto& eng = Engine();
    dnnl::stream stream(eng);
    std::unique_ptr<uint8_t[]> scratch_buf(new uint8_t[p->scratch.get_size()]);  // no zero-fill
    memory scratch(p->scratch, eng, scratch_buf.get());
    void* w_ptr = kind == kBwdWeights ? out.untyped_data() : second.untyped_data();
    memory w_user(p->weights_user, eng, w_ptr);
    memory w = p->reorder ? memory(p->weights, eng) : w_user;
    if (p->reorder && kind != kBwdWeights) p->weights_reorder.execute(stream, w_user, w);
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
      if (p->reorder) p->weights_reorder.execute(stream, w, w_user);
    }
    stream.wait();
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("onednn conv: ") + e.what());
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
