#include "mgd/distiller/distiller.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mgd/loss/loss.h"
#include "mgd/loss/normalized_margin_loss.h"
#include "mgd/margins/margins.h"
#include "mgd/solver/assignment.h"

namespace mgd {
namespace {

// --- The tracking pass's cross products (spec 3) ---------------------------------------------
// dots[i][j] = sum_k S[i][k] * T[j][k] for S: s x n and T: s x n (float, contiguous), the
// student and teacher maps of a batch with the images side by side along k. A GEMM with a very
// long inner dimension and tiny outer ones: LibTorch hands it to the system BLAS, on Debian
// the reference one, which takes as long as a teacher's forward pass per batch. This kernel
// computes exactly what that sgemm computes -- each dot accumulated in float in the order
// k = 0, 1, ..., a rounded product then a rounded sum (no FMA) -- so tracked costs, and the
// matchings and runs that follow, do not change; it vectorizes over 8 teacher channels of the
// transposed teacher map instead, for 4 x 16 outputs at a time.
constexpr int64_t kRowBlock = 4, kColBlock = 16;

void cross_dots_scalar(const float* S, const float* Tt, int64_t t, int64_t n, int64_t i, int64_t j,
                       float* out) {
  float acc = 0.f;
  for (int64_t k = 0; k < n; ++k) {
    const volatile float product = S[i * n + k] * Tt[k * t + j];  // no contraction into an FMA
    acc = acc + product;
  }
  out[i * t + j] = acc;
}

// Rows [i0, i1) of out, all columns; Tt is T transposed (n x t).
__attribute__((target("avx2"))) void cross_dots_avx2(const float* S, const float* Tt, int64_t s,
                                                    int64_t t, int64_t n, int64_t i0, int64_t i1,
                                                    float* out) {
  (void)s;
  int64_t i = i0;
  for (; i + kRowBlock <= i1; i += kRowBlock) {
    const float* s0 = S + i * n;
    const float* s1 = s0 + n;
    const float* s2 = s1 + n;
    const float* s3 = s2 + n;
    int64_t j = 0;
    for (; j + kColBlock <= t; j += kColBlock) {
      __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(),
             a11 = _mm256_setzero_ps(), a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(),
             a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
      const float* tk = Tt + j;
      for (int64_t k = 0; k < n; ++k, tk += t) {
        const __m256 t0 = _mm256_loadu_ps(tk), t1 = _mm256_loadu_ps(tk + 8);
        __m256 x = _mm256_broadcast_ss(s0 + k);
        a00 = _mm256_add_ps(a00, _mm256_mul_ps(x, t0));
        a01 = _mm256_add_ps(a01, _mm256_mul_ps(x, t1));
        x = _mm256_broadcast_ss(s1 + k);
        a10 = _mm256_add_ps(a10, _mm256_mul_ps(x, t0));
        a11 = _mm256_add_ps(a11, _mm256_mul_ps(x, t1));
        x = _mm256_broadcast_ss(s2 + k);
        a20 = _mm256_add_ps(a20, _mm256_mul_ps(x, t0));
        a21 = _mm256_add_ps(a21, _mm256_mul_ps(x, t1));
        x = _mm256_broadcast_ss(s3 + k);
        a30 = _mm256_add_ps(a30, _mm256_mul_ps(x, t0));
        a31 = _mm256_add_ps(a31, _mm256_mul_ps(x, t1));
      }
      float* o = out + i * t + j;
      _mm256_storeu_ps(o, a00);
      _mm256_storeu_ps(o + 8, a01);
      _mm256_storeu_ps(o + t, a10);
      _mm256_storeu_ps(o + t + 8, a11);
      _mm256_storeu_ps(o + 2 * t, a20);
      _mm256_storeu_ps(o + 2 * t + 8, a21);
      _mm256_storeu_ps(o + 3 * t, a30);
      _mm256_storeu_ps(o + 3 * t + 8, a31);
    }
    for (; j < t; ++j) {
      for (int64_t r = 0; r < kRowBlock; ++r) cross_dots_scalar(S, Tt, t, n, i + r, j, out);
    }
  }
  for (; i < i1; ++i) {
    for (int64_t j = 0; j < t; ++j) cross_dots_scalar(S, Tt, t, n, i, j, out);
  }
}

// S T^T for S: s x n, T: t x n (float, CPU), as a float s x t tensor equal bit for bit to
// torch::matmul(S, T.t()) through a reference sgemm.
torch::Tensor cross_dots(const torch::Tensor& S, const torch::Tensor& T) {
  const int64_t s = S.size(0), t = T.size(0), n = S.size(1);
  if (!__builtin_cpu_supports("avx2")) return torch::matmul(S, T.t());
  auto sc = S.contiguous();
  auto tt = T.t().contiguous();  // n x t: 8 teacher channels per load
  auto out = torch::empty({s, t}, torch::kFloat);
  const float* sp = sc.data_ptr<float>();
  const float* tp = tt.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, (s + kRowBlock - 1) / kRowBlock, 1, [&](int64_t begin, int64_t end) {
    cross_dots_avx2(sp, tp, s, t, n, begin * kRowBlock, std::min(end * kRowBlock, s), op);
  });
  return out;
}

// Each (image, channel) vector scaled to unit L2 norm, as F.normalize(x, p=2, dim=2).
torch::Tensor unit_rows(const torch::Tensor& x) {
  auto f = x.to(torch::kFloat);
  return f / f.norm(2, {2}, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace

DistillerImpl::DistillerImpl(FeatureNet teacher, FeatureNet student, DistillerOptions options)
    : options_(std::move(options)), teacher_(std::move(teacher)), student_(std::move(student)) {
  TORCH_CHECK(teacher_ && student_, "Distiller: a teacher and a student network are required");
  reducer_ = make_reducer(options_.reducer());
  TORCH_CHECK(std::isfinite(options_.kd_temperature()) && options_.kd_temperature() > 0,
              "Distiller: invalid KD temperature ", options_.kd_temperature(),
              " (expected finite and > 0)");

  auto teacher_norms = teacher_->feature_affines();
  TORCH_CHECK(teacher_norms.size() == teacher_->feature_channels().size(),
              "Distiller: the teacher exposes ", teacher_norms.size(), " norms for ",
              teacher_->feature_channels().size(), " feature positions");
  teacher_channels_ = teacher_->feature_channels();
  student_channels_ = student_->feature_channels();
  const int64_t n = num_positions();
  TORCH_CHECK(n > 0, "Distiller: the teacher exposes no feature positions");
  TORCH_CHECK(static_cast<int64_t>(student_channels_.size()) == n, "Distiller: the teacher has ", n,
              " feature positions but the student has ", student_channels_.size());

  for (int64_t p : options_.ignore_positions()) {
    TORCH_CHECK(p >= 0 && p < n, "Distiller: ignored position ", p, " out of range [0, ", n, ")");
  }
  if (options_.loss_divisors().empty()) {
    for (int64_t i = 0; i < n; ++i)
      divisors_.push_back(std::ldexp(1.0, static_cast<int>(n - i - 1)));
  } else {
    TORCH_CHECK(static_cast<int64_t>(options_.loss_divisors().size()) == n, "Distiller: expected ",
                n, " loss divisors (one per position), got ", options_.loss_divisors().size());
    divisors_ = options_.loss_divisors();
  }

  // Teacher frozen: eval mode, no gradients (spec 7).
  for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  register_module("teacher", std::static_pointer_cast<torch::nn::Module>(teacher_));
  register_module("student", std::static_pointer_cast<torch::nn::Module>(student_));

  for (int64_t i = 0; i < n; ++i) {
    if (std::find(options_.ignore_positions().begin(), options_.ignore_positions().end(), i) !=
        options_.ignore_positions().end()) {
      continue;
    }
    const int64_t t = teacher_channels_[i], s = student_channels_[i];
    TORCH_CHECK(s <= t, "Distiller: at position ", i, " the student (", s,
                " channels) is wider than the teacher (", t,
                " channels); MGD needs teacher channels >= student channels");
    TORCH_CHECK(divisors_[i] > 0 && std::isfinite(divisors_[i]), "Distiller: loss divisor ",
                divisors_[i], " of position ", i, " must be finite and > 0");
    guided_.push_back(i);
    const std::string tag = std::to_string(i);
    if (options_.group_norm()) {
      TORCH_CHECK(s % 32 == 0, "Distiller: GroupNorm(32, s) at position ", i,
                  " needs s divisible by 32, got s = ", s);
      group_norms_.push_back(
          register_module("norm" + tag, torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, s))));
    } else {
      batch_norms_.push_back(register_module("norm" + tag, torch::nn::BatchNorm2d(s)));
    }
    const auto& norm = teacher_norms[i];
    TORCH_CHECK(norm.weight.defined() && norm.bias.defined(), "Distiller: the teacher has no ",
                "norm before its feature map at position ", i,
                "; its margins cannot be computed, so this network cannot serve as a teacher "
                "at that position (ignore the position, or use another teacher)");
    TORCH_CHECK(norm.weight.numel() == t, "Distiller: the teacher's norm at position ",
                i, " has ", norm.weight.numel(), " channels but its feature map has ", t,
                "; its margins cannot be computed, so this network cannot serve as a teacher "
                "at that position (ignore the position, or use another teacher)");
    // Spec 2: once, at construction (a teacher's weights must be loaded before).
    auto margins = margins_from_bn(norm.weight.detach(), norm.bias.detach());
    const int64_t k = reducer_->sparse() ? 1 : t / s;
    reducers_.push_back(register_module("reducer" + tag, ChannelReducer(reducer_, margins, s, k)));
    cost_sums_.push_back(register_buffer("cost_sum" + tag, torch::zeros({s, t}, torch::kDouble)));
  }
  TORCH_CHECK(!guided_.empty(), "Distiller: every position is ignored; nothing to distill");
  tracked_images_ = register_buffer("tracked_images", torch::zeros({}, torch::kLong));
  matched_ = register_buffer("matched", torch::zeros({}, torch::kLong));
  train(is_training());
}

void DistillerImpl::train(bool on) {
  torch::nn::Module::train(on);
  teacher_->eval();
}

bool DistillerImpl::is_guided(int64_t position) const {
  return std::find(guided_.begin(), guided_.end(), position) != guided_.end();
}

int64_t DistillerImpl::guided_slot(int64_t position) const {
  TORCH_CHECK(position >= 0 && position < num_positions(), "Distiller: position ", position,
              " out of range [0, ", num_positions(), ")");
  auto it = std::find(guided_.begin(), guided_.end(), position);
  TORCH_CHECK(it != guided_.end(), "Distiller: position ", position, " is ignored (not distilled)");
  return it - guided_.begin();
}

int64_t DistillerImpl::groups(int64_t position) const {
  return reducers_[guided_slot(position)]->index().size(0);
}

const torch::Tensor& DistillerImpl::margins(int64_t position) const {
  return reducers_[guided_slot(position)]->margins();
}

const torch::Tensor& DistillerImpl::matching(int64_t position) const {
  return reducers_[guided_slot(position)]->index();
}

torch::Tensor& DistillerImpl::cost_sum(int64_t position) {
  return cost_sums_[guided_slot(position)];
}

int64_t DistillerImpl::tracked_images() const {
  return tracked_images_.item<int64_t>();
}

bool DistillerImpl::matched() const {
  return matched_.item<int64_t>() != 0;
}

torch::Tensor DistillerImpl::student_norm(int64_t position, const torch::Tensor& x) {
  const int64_t slot = guided_slot(position);
  return options_.group_norm() ? group_norms_[slot]->forward(x) : batch_norms_[slot]->forward(x);
}

const torch::Tensor& DistillerImpl::feature_at(const Features& f, int64_t position) const {
  const auto& maps = options_.pre_relu() ? f.pre_relu : f.post_relu;
  TORCH_CHECK(position < static_cast<int64_t>(maps.size()), "Distiller: the network returned ",
              maps.size(), " ", options_.pre_relu() ? "pre" : "post",
              "-ReLU feature maps, expected ", num_positions());
  return maps[position];
}

void DistillerImpl::check_features(const Features& teacher, const Features& student) const {
  for (int64_t i : guided_) {
    const auto& t = feature_at(teacher, i);
    const auto& s = feature_at(student, i);
    TORCH_CHECK(t.dim() == 4 && s.dim() == 4, "Distiller: at position ", i,
                " expected 4-D maps, got teacher ", t.sizes(), " and student ", s.sizes());
    TORCH_CHECK(t.size(1) == teacher_channels_[i] && s.size(1) == student_channels_[i],
                "Distiller: at position ", i, " expected ", teacher_channels_[i], " teacher and ",
                student_channels_[i], " student channels, got teacher ", t.sizes(), " and student ",
                s.sizes());
    TORCH_CHECK(t.size(0) == s.size(0) && t.size(2) == s.size(2) && t.size(3) == s.size(3),
                "Distiller: at position ", i,
                " teacher and student maps must share batch and spatial size, got teacher ",
                t.sizes(), " and student ", s.sizes());
  }
}

void DistillerImpl::reset_tracking() {
  torch::NoGradGuard no_grad;
  for (auto& c : cost_sums_) c.zero_();
  tracked_images_.zero_();
}

void DistillerImpl::track(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const bool student_training = student_->is_training();
  student_->eval();
  // Both in eval mode: each as a frozen program where it has one (models/frozen.h); the
  // student's is rebuilt from its current weights on the pass's first batch.
  Features t = teacher_->extract_frozen(images);
  Features s = student_->extract_frozen(images);
  student_->train(student_training);
  track_features(t, s);
}

void DistillerImpl::track_features(const Features& teacher, const Features& student) {
  torch::NoGradGuard no_grad;
  check_features(teacher, student);
  // Every position is checked before any sum changes: a batch refused leaves no trace.
  std::vector<torch::Tensor> batch_costs;
  for (size_t slot = 0; slot < guided_.size(); ++slot) {
    const int64_t i = guided_[slot];
    const auto& tm = feature_at(teacher, i);
    const auto& sm = feature_at(student, i);
    const int64_t b = tm.size(0), hw = tm.size(2) * tm.size(3);
    // Unit vectors per (image, channel); sum_b (2 - 2 <s_bj, t_bc>) = 2B - 2 * S T^T with the
    // images laid side by side along the inner dimension: one long product instead of B.
    auto tn = unit_rows(tm.reshape({b, tm.size(1), hw}));
    auto sn = unit_rows(sm.reshape({b, sm.size(1), hw}));
    auto s_rows = sn.permute({1, 0, 2}).reshape({sm.size(1), b * hw});
    auto t_rows = tn.permute({1, 0, 2}).reshape({tm.size(1), b * hw});
    auto dots = (tn.is_cpu() ? cross_dots(s_rows, t_rows) : torch::matmul(s_rows, t_rows.t()))
                    .to(torch::kDouble);
    auto batch_cost = (2.0 * static_cast<double>(b)) - 2.0 * dots;
    TORCH_CHECK(torch::isfinite(batch_cost).all().item<bool>(),
                "Distiller: non-finite matching cost at position ", i, " (the ",
                torch::isfinite(tm).all().item<bool>() ? "student" : "teacher",
                "'s feature map holds NaN or inf)");
    batch_costs.push_back(std::move(batch_cost));
  }
  for (size_t slot = 0; slot < guided_.size(); ++slot) {
    cost_sums_[slot].add_(batch_costs[slot].to(cost_sums_[slot].device()));
  }
  tracked_images_.add_(feature_at(teacher, guided_.front()).size(0));
}

torch::Tensor DistillerImpl::cost_matrix(int64_t position) const {
  const int64_t n = tracked_images();
  TORCH_CHECK(n > 0, "Distiller: no images tracked; call track() before computing the cost");
  return cost_sums_[guided_slot(position)] / static_cast<double>(n);
}

std::vector<double> DistillerImpl::update_matching() {
  TORCH_CHECK(tracked_images() > 0,
              "Distiller: update_matching() before any tracking; call track() on some images "
              "first");
  std::vector<double> mean_costs(static_cast<size_t>(num_positions()),
                                 std::numeric_limits<double>::quiet_NaN());
  for (size_t slot = 0; slot < guided_.size(); ++slot) {
    const int64_t i = guided_[slot];
    const int64_t s = student_channels_[i], t = teacher_channels_[i];
    const int64_t k = reducers_[slot]->index().size(0);
    auto cost = cost_matrix(i).to(torch::kCPU);
    // Reference shave rule: only the first k*s teacher channels are candidates (spec 4a).
    // Sparse matching (SM) always sees all t channels (spec 4b).
    if (!reducer_->sparse() && options_.shave() == ShaveRule::kFirst)
      cost = cost.narrow(1, 0, k * s);
    cost = cost.contiguous();
    auto result = solver::tiled_assignment(cost.data_ptr<double>(), s, cost.size(1), k);
    TORCH_CHECK(result.status == solver::Status::kOptimal, "Distiller: matching at position ", i,
                " (", s, " x ", t, ", k = ", k, ") failed: ", solver::status_name(result.status));
    auto index = torch::empty({k, s}, torch::kLong);
    auto acc = index.accessor<int64_t, 2>();
    for (int64_t j = 0; j < s; ++j) {
      for (int64_t g = 0; g < k; ++g) acc[g][j] = result.row_to_col[j * k + g];
    }
    reducers_[slot]->set_index(index);
    mean_costs[i] = result.cost / static_cast<double>(k * s);
  }
  matched_.fill_(1);
  return mean_costs;
}

void DistillerImpl::set_matching(int64_t position, const torch::Tensor& index) {
  reducers_[guided_slot(position)]->set_index(index);
  matched_.fill_(1);
}

std::vector<torch::Tensor> DistillerImpl::trainable_parameters() {
  std::vector<torch::Tensor> params = student_->parameters();
  for (auto& bn : batch_norms_) {
    for (auto& p : bn->parameters()) params.push_back(p);
  }
  for (auto& gn : group_norms_) {
    for (auto& p : gn->parameters()) params.push_back(p);
  }
  return params;
}

DistillOutput DistillerImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(matched(),
              "Distiller: forward before any matching; run a tracking pass "
              "(track) and update_matching() first");
  // The teacher records no autograd graph (the reference records one; spec 1, issue 2) and
  // runs as a frozen program where it can (models/frozen.h).
  Features tf = teacher_->extract_frozen(images);
  Features sf = student_->extract(images);
  return forward_features(tf, sf);
}

DistillOutput DistillerImpl::forward_features(const Features& tf, const Features& sf) {
  TORCH_CHECK(matched(),
              "Distiller: losses before any matching; run a tracking pass "
              "(track) and update_matching() first");
  check_features(tf, sf);

  DistillOutput out;
  out.logits = sf.logits;
  out.teacher_logits = tf.logits;
  out.position_losses.resize(static_cast<size_t>(num_positions()));
  out.loss = torch::zeros({}, feature_at(sf, guided_.front()).options());
  for (size_t slot = 0; slot < guided_.size(); ++slot) {
    const int64_t i = guided_[slot];
    const auto& student_map = feature_at(sf, i);
    const auto& teacher_map = feature_at(tf, i);
    torch::Tensor loss;
    if (!options_.group_norm() && reducer_->amp_selection()) {
      // AMP (SM: k = 1) selected inside the fused BatchNorm + margin loss's pass.
      const auto& reducer = reducers_[slot];
      loss = functional::normalized_margin_loss_amp(batch_norms_[slot], student_map, teacher_map,
                                                    reducer->margins(), reducer->index());
    } else {
      Reduced reduced;
      {
        torch::NoGradGuard no_grad;
        reduced = reducers_[slot]->forward(teacher_map);
      }
      // BatchNorm and the margin loss in one operation (two passes each way on the CPU).
      loss = options_.group_norm()
                 ? functional::margin_loss(group_norms_[slot]->forward(student_map),
                                           reduced.feature, reduced.margin)
                 : functional::normalized_margin_loss(batch_norms_[slot], student_map,
                                                      reduced.feature, reduced.margin);
    }
    loss = loss / divisors_[i];
    out.position_losses[i] = loss;
    out.loss = out.loss + loss;
  }
  if (options_.with_kd()) {
    TORCH_CHECK(sf.logits.defined() && tf.logits.defined(),
                "Distiller: KD needs the logits of both networks; these networks have none");
    out.kd_loss = functional::kd_loss(sf.logits, tf.logits, options_.kd_temperature());
  }
  return out;
}

}  // namespace mgd
