// MoCo's pieces (mgd/models/moco.h): InfoNCE logits and loss, the momentum update, the queue,
// the kNN monitor's vote and BatchNorm in groups -- by hand, then against PyTorch running
// MoCo's own expressions on the same tensors (tests/oracle/moco_oracle.py).
#include "mgd/models/moco.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "support/temp_dir.h"

namespace {

using mgd::serialize::Dict;
using mgd::serialize::Value;
namespace functional = mgd::functional;

torch::Tensor unit_rows(const torch::Tensor& x) {
  return x / x.norm(2, {1}, true);
}

// Runs `command` of the oracle on `in`; skips the test when Python's torch is missing.
Value oracle(const std::string& command, const Dict& in) {
  mgd::testing::TempDir dir("mgd-moco-oracle");
  mgd::serialize::save_file(dir / "in.pt", Value(in));
  const std::string cmd = std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR +
                          "/tests/oracle/moco_oracle.py " + command + " " + (dir / "in.pt") + " " +
                          (dir / "out.pt") + " 2>&1";
  const int status = std::system(cmd.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "the PyTorch oracle failed: " << cmd
                  << " (are python3-torch and python3-torchvision installed?)";
    return Value();
  }
  return mgd::serialize::load_file(dir / "out.pt");
}

Dict dict(std::initializer_list<std::pair<const char*, Value>> items) {
  Dict d;
  for (const auto& [k, v] : items) d.insert_or_assign(k, v);
  return d;
}

// --- logits and loss

TEST(MoCoLogits, HandSolved) {
  // q = e0, k = e0 (positive 1), queue columns e1 and -e0 (negatives 0 and -1); T = 0.5.
  auto q = torch::tensor({{1.f, 0.f}}), k = torch::tensor({{1.f, 0.f}});
  auto queue = torch::tensor({{0.f, -1.f}, {1.f, 0.f}});
  auto logits = functional::moco_logits(q, k, queue, 0.5);
  EXPECT_TRUE(torch::equal(logits, torch::tensor({{2.f, 0.f, -2.f}})));
  // InfoNCE: -log(e^2 / (e^2 + e^0 + e^-2)).
  auto loss = torch::nn::functional::cross_entropy(logits, torch::zeros({1}, torch::kLong));
  EXPECT_NEAR(loss.item<double>(), -std::log(std::exp(2.0) / (std::exp(2.0) + 1 + std::exp(-2.0))),
              1e-6);
}

TEST(MoCoLogits, WrongShapesAreOneClearError) {
  auto q = torch::randn({4, 8});
  EXPECT_THROW(functional::moco_logits(q, torch::randn({4, 7}), torch::randn({8, 16}), 0.2),
               c10::Error);
  EXPECT_THROW(functional::moco_logits(q, q, torch::randn({7, 16}), 0.2), c10::Error);
  EXPECT_THROW(functional::moco_logits(q, q, torch::randn({8, 16}), 0.0), c10::Error);
}

TEST(MoCoLogits, MatchPyTorchAndTheGradientReachesOnlyTheQueries) {
  torch::manual_seed(3);
  auto q = unit_rows(torch::randn({16, 32})).requires_grad_(true);
  auto k = unit_rows(torch::randn({16, 32})).requires_grad_(true);
  auto queue = unit_rows(torch::randn({64, 32})).t().contiguous();
  auto logits = functional::moco_logits(q, k, queue, 0.2);
  auto loss = torch::nn::functional::cross_entropy(logits, torch::zeros({16}, torch::kLong));
  loss.backward();
  EXPECT_TRUE(q.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  auto out =
      oracle("logits", dict({{"q", q.detach()}, {"k", k.detach()}, {"queue", queue}, {"t", 0.2}}));
  if (out.is_none()) return;
  EXPECT_TRUE(torch::allclose(logits.detach(), out.at("logits").to_tensor(), 1e-6, 1e-6));
  EXPECT_NEAR(loss.item<double>(), out.at("loss").to_tensor().item<double>(), 1e-6);
}

// --- momentum update

TEST(MoCoMomentum, HandSolvedAndEqualToPyTorchBitForBit) {
  std::vector<torch::Tensor> key = {torch::tensor({1.f, 2.f})}, query = {torch::tensor({3.f, 4.f})};
  functional::momentum_update(key, query, 0.5);
  EXPECT_TRUE(torch::equal(key[0], torch::tensor({2.f, 3.f})));

  torch::manual_seed(4);
  std::vector<torch::Tensor> k = {torch::randn({5, 3}), torch::randn({7})};
  std::vector<torch::Tensor> q = {torch::randn({5, 3}), torch::randn({7})};
  auto before = std::vector<torch::Tensor>{k[0].clone(), k[1].clone()};
  functional::momentum_update(k, q, 0.999);
  auto out = oracle("momentum", dict({{"key", Value::list({before[0], before[1]})},
                                      {"query", Value::list({q[0], q[1]})},
                                      {"m", 0.999}}));
  if (out.is_none()) return;
  EXPECT_TRUE(torch::equal(k[0], out.at("key").items()[0].to_tensor()));
  EXPECT_TRUE(torch::equal(k[1], out.at("key").items()[1].to_tensor()));
}

// The one-pass update of large float tensors (several threads' chunks) equals the tensor
// expression bit for bit; other dtypes and strided tensors take the expression itself.
TEST(MoCoMomentum, OnePassEqualsTheExpressionBitForBit) {
  torch::manual_seed(6);
  const auto q = torch::randn({300001});
  const auto k = torch::randn({300001});
  for (const double m : {0.999, 0.99, 0.5, 0.0, 1.0}) {
    std::vector<torch::Tensor> key = {k.clone()};
    functional::momentum_update(key, {q}, m);
    EXPECT_TRUE(torch::equal(key[0], k * m + q * (1.0 - m))) << m;
  }
  const auto kd = torch::randn({1000}, torch::kDouble), qd = torch::randn({1000}, torch::kDouble);
  std::vector<torch::Tensor> key = {kd.clone()};
  functional::momentum_update(key, {qd}, 0.999);
  EXPECT_TRUE(torch::equal(key[0], kd * 0.999 + qd * (1.0 - 0.999)));
  const auto kt = torch::randn({64, 48}), qt = torch::randn({48, 64}).t();  // q strided
  std::vector<torch::Tensor> strided = {kt.clone()};
  functional::momentum_update(strided, {qt}, 0.9);
  EXPECT_TRUE(torch::equal(strided[0], kt * 0.9 + qt * (1.0 - 0.9)));
}

TEST(MoCoMomentum, TheModulesKeyEncoderStartsAsTheQueryEncoderAndFollowsIt) {
  torch::manual_seed(5);
  mgd::models::MoCo moco(
      mgd::models::MoCoOptions("resnet20").in_channels(1).dim(8).queue_size(32).momentum(0.9));
  auto q = moco->encoder_q->named_parameters(), k = moco->encoder_k->named_parameters();
  ASSERT_EQ(q.size(), k.size());
  for (const auto& p : q) {
    EXPECT_TRUE(torch::equal(p.value(), k[p.key()])) << p.key();
    EXPECT_FALSE(k[p.key()].requires_grad()) << p.key();
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& p : moco->encoder_q->parameters()) p.add_(1.0);
  }
  const auto w = q["conv1.weight"].clone(), before = k["conv1.weight"].clone();
  moco->momentum_update();
  EXPECT_TRUE(torch::equal(k["conv1.weight"], before * 0.9 + w * (1.0 - 0.9)));
}

// --- the queue

TEST(MoCoQueue, EnqueuesInOrderAndWrapsAround) {
  auto queue = torch::zeros({2, 5});
  auto keys = [](float a, int64_t n) {
    return torch::arange(a, a + static_cast<float>(n)).unsqueeze(1).repeat({1, 2});
  };
  int64_t ptr = functional::enqueue(queue, keys(1, 2), 0);
  EXPECT_EQ(ptr, 2);
  EXPECT_TRUE(torch::equal(queue[0], torch::tensor({1.f, 2.f, 0.f, 0.f, 0.f})));
  ptr = functional::enqueue(queue, keys(3, 4), ptr);  // 3, 4, 5 at 2..4, then 6 at 0
  EXPECT_EQ(ptr, 1);
  EXPECT_TRUE(torch::equal(queue[0], torch::tensor({6.f, 2.f, 3.f, 4.f, 5.f})));
  EXPECT_TRUE(torch::equal(queue[1], queue[0]));
  // More keys than slots: the last five remain, where the pointer would have put them.
  ptr = functional::enqueue(queue, keys(10, 7), ptr);  // 10..16 from slot 1: 15 at 1, 16 at 2
  EXPECT_EQ(ptr, 3);
  EXPECT_TRUE(torch::equal(queue[0], torch::tensor({14.f, 15.f, 16.f, 12.f, 13.f})));
  EXPECT_THROW(functional::enqueue(queue, torch::zeros({1, 3}), 0), c10::Error);
  EXPECT_THROW(functional::enqueue(queue, torch::zeros({1, 2}), 5), c10::Error);
}

TEST(MoCoQueue, EqualsMoCosDequeueAndEnqueue) {
  torch::manual_seed(6);
  auto queue = torch::randn({8, 24});
  auto keys = torch::randn({6, 8});
  auto mine = queue.clone();
  const int64_t ptr = functional::enqueue(mine, keys, 12);
  auto out = oracle("enqueue", dict({{"queue", queue}, {"keys", keys}, {"ptr", int64_t{12}}}));
  if (out.is_none()) return;
  EXPECT_TRUE(torch::equal(mine, out.at("queue").to_tensor()));
  EXPECT_EQ(ptr, out.at("ptr").to_int());
  // The module's pointer follows.
  mgd::models::MoCo moco(mgd::models::MoCoOptions("resnet20").in_channels(1).dim(8).queue_size(24));
  moco->enqueue(unit_rows(torch::randn({6, 8})));
  moco->enqueue(unit_rows(torch::randn({6, 8})));
  EXPECT_EQ(moco->queue_ptr(), 12);
}

// --- kNN monitor

TEST(MoCoKnn, HandSolvedVote) {
  // Bank: two of class 0 near e0, one of class 1 at e1. A query at e0 with k = 2 hears the
  // two class-0 neighbours.
  auto bank = torch::tensor({{1.f, 0.f}, {0.8f, 0.6f}, {0.f, 1.f}});
  auto labels = torch::tensor({0, 0, 1}, torch::kLong);
  auto scores = functional::knn_scores(torch::tensor({{1.f, 0.f}}), bank, labels, 2, 2, 0.1);
  EXPECT_NEAR(scores[0][0].item<double>(), std::exp(10.0) + std::exp(8.0), 1e-2);
  EXPECT_EQ(scores[0][1].item<double>(), 0.0);
  // k larger than the bank: every entry votes.
  scores = functional::knn_scores(torch::tensor({{0.f, 1.f}}), bank, labels, 2, 200, 0.1);
  EXPECT_GT(scores[0][1].item<double>(), scores[0][0].item<double>());
  EXPECT_THROW(functional::knn_scores(torch::ones({1, 3}), bank, labels, 2, 2, 0.1), c10::Error);
}

TEST(MoCoKnn, EqualsTheDemosKnnPredict) {
  torch::manual_seed(7);
  auto features = unit_rows(torch::randn({10, 16}));
  auto bank = unit_rows(torch::randn({300, 16}));
  auto labels = torch::randint(0, 10, {300}, torch::kLong);
  auto scores = functional::knn_scores(features, bank, labels, 10, 200, 0.1);
  auto out = oracle("knn", dict({{"features", features},
                                 {"bank", bank.t().contiguous()},
                                 {"labels", labels},
                                 {"classes", int64_t{10}},
                                 {"k", int64_t{200}},
                                 {"t", 0.1}}));
  if (out.is_none()) return;
  auto expected = out.at("scores").to_tensor();
  EXPECT_TRUE(torch::allclose(scores, expected, 1e-5, 1e-3));
  EXPECT_TRUE(torch::equal(scores.argmax(1), expected.argmax(1)));
}

// --- BatchNorm in groups (the shuffled BatchNorm's groups)

TEST(MoCoGroupedBatchNorm, EqualsSeparatePassesPerGroupAndDiffersFromOneBatch) {
  torch::manual_seed(8);
  mgd::models::MoCoEncoder net(mgd::models::MoCoEncoderOptions("resnet20").in_channels(1).dim(8));
  net->train();
  auto x = torch::randn({8, 1, 16, 16});
  torch::NoGradGuard no_grad;
  auto grouped = functional::grouped_extract(*net, x, 4);
  for (int64_t g = 0; g < 4; ++g) {
    auto alone = net->extract(x.narrow(0, 2 * g, 2));
    EXPECT_TRUE(torch::equal(grouped.logits.narrow(0, 2 * g, 2), alone.logits)) << g;
    for (size_t i = 0; i < alone.pre_relu.size(); ++i) {
      EXPECT_TRUE(torch::equal(grouped.pre_relu[i].narrow(0, 2 * g, 2), alone.pre_relu[i]));
    }
  }
  EXPECT_FALSE(torch::allclose(grouped.logits, net->extract(x).logits));
  EXPECT_TRUE(torch::equal(functional::grouped_extract(*net, x, 1).logits, net->extract(x).logits));
  EXPECT_THROW(functional::grouped_extract(*net, x, 3), c10::Error);
}

TEST(MoCoGroupedBatchNorm, EqualsTheDemosSplitBatchNormOnMoCosEncoder) {
  // A torchvision ResNet-18 with MoCo's MLP head and the CIFAR demo's SplitBatchNorm, loaded
  // with this encoder's weights: the same outputs in training mode. SplitBatchNorm's group s
  // holds the images s, s + S, s + 2S, ...; grouped_extract's the consecutive ones, so the
  // oracle's input is interleaved to match.
  torch::manual_seed(9);
  mgd::models::MoCoEncoder net(mgd::models::MoCoEncoderOptions("resnet18").in_channels(1).dim(16));
  net->train();
  const int64_t n = 8, splits = 2, per = n / splits;
  auto x = torch::randn({n, 1, 64, 64});
  torch::Tensor mine;
  {
    torch::NoGradGuard no_grad;
    mine = functional::grouped_extract(*net, x, splits).logits;
  }
  std::vector<int64_t> order;  // oracle row r * S + s <- my row s * per + r
  for (int64_t r = 0; r < per; ++r) {
    for (int64_t s = 0; s < splits; ++s) order.push_back(s * per + r);
  }
  auto index = torch::tensor(order, torch::kLong);
  auto out = oracle("splitbn", dict({{"state", mgd::serialize::state_dict_value(*net)},
                                     {"input", x.index_select(0, index)},
                                     {"splits", splits},
                                     {"arch", "resnet18"},
                                     {"dim", int64_t{16}},
                                     {"mlp", true}}));
  if (out.is_none()) return;
  auto theirs = out.at("output").to_tensor();
  EXPECT_TRUE(torch::allclose(mine.index_select(0, index), theirs, 1e-4, 1e-4))
      << (mine.index_select(0, index) - theirs).abs().max();
}

TEST(MoCoShuffledBatchNorm, KeysReturnToTheirImagesNormalizedAmongTheirShare) {
  torch::manual_seed(11);
  mgd::models::MoCoEncoder net(mgd::models::MoCoEncoderOptions("resnet20").in_channels(1).dim(8));
  net->train();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({8, 1, 16, 16});
  auto perm = torch::tensor({5, 2, 7, 0, 3, 6, 1, 4}, torch::kLong);
  // One rank, one group: BatchNorm over the whole (permuted) batch, so the unshuffled keys
  // are the plain pass's (up to the summation order).
  auto one = functional::unshuffle(functional::encode_shuffled_share(*net, x, perm, 0, 1, 1), perm);
  EXPECT_TRUE(torch::allclose(one, net->extract(x).logits, 1e-4, 1e-5));
  // Two ranks of 4 (emulated): rank r encodes images perm[4r .. 4r + 4) together; after the
  // unshuffle image perm[j]'s key is that pass's row j - 4r, bit for bit.
  auto share0 = functional::encode_shuffled_share(*net, x, perm, 0, 2, 1);
  auto share1 = functional::encode_shuffled_share(*net, x, perm, 1, 2, 1);
  auto keys = functional::unshuffle(torch::cat({share0, share1}, 0), perm);
  for (int64_t r = 0; r < 2; ++r) {
    auto group = perm.narrow(0, 4 * r, 4);
    auto alone = net->extract(x.index_select(0, group)).logits;
    for (int64_t j = 0; j < 4; ++j) {
      EXPECT_TRUE(torch::equal(keys[group[j].item<int64_t>()], alone[j])) << r << " " << j;
    }
  }
  // The same rank's share in two BatchNorm groups: two passes of two images.
  auto split = functional::encode_shuffled_share(*net, x, perm, 1, 2, 2);
  EXPECT_TRUE(torch::equal(split.narrow(0, 0, 2),
                           net->extract(x.index_select(0, perm.narrow(0, 4, 2))).logits));
  EXPECT_THROW(functional::encode_shuffled_share(*net, x, perm, 2, 2, 1), c10::Error);
  EXPECT_THROW(functional::unshuffle(share0, perm), c10::Error);
}

// --- checkpoints: MoCo's names

TEST(MoCoCheckpoint, NamesAreMoCosAndAnEncoderLoadsFromAMoCoStateDict) {
  torch::manual_seed(10);
  mgd::models::MoCo moco(
      mgd::models::MoCoOptions("resnet18").in_channels(1).dim(16).queue_size(32));
  auto state = mgd::serialize::module_state_dict(*moco);
  for (const char* key :
       {"encoder_q.conv1.weight", "encoder_q.layer4.1.bn2.running_var", "encoder_q.fc.0.weight",
        "encoder_q.fc.2.bias", "encoder_k.fc.2.weight", "queue", "queue_ptr"}) {
    EXPECT_TRUE(state.contains(key)) << key;
  }
  EXPECT_EQ(state["queue"].sizes(), (std::vector<int64_t>{16, 32}));
  // The official format: {"state_dict": {"module.encoder_q....": ...}, "epoch": ...}.
  Dict sd = Dict::ordered_dict();
  for (const auto& item : state) sd.insert_or_assign("module." + item.key(), item.value());
  mgd::testing::TempDir dir("mgd-moco-ckpt");
  mgd::serialize::save_file(
      dir / "moco_v2.pth",
      Value(dict({{"epoch", int64_t{200}}, {"arch", "resnet18"}, {"state_dict", Value(sd)}})));
  mgd::models::MoCoEncoder encoder(
      mgd::models::MoCoEncoderOptions("resnet18").in_channels(1).dim(16));
  mgd::models::load_moco_encoder(dir / "moco_v2.pth", *encoder);
  EXPECT_TRUE(torch::equal(encoder->named_parameters()["layer3.0.conv1.weight"],
                           moco->encoder_q->named_parameters()["layer3.0.conv1.weight"]));
  // A different architecture is one clear error naming the file.
  mgd::models::MoCoEncoder other(
      mgd::models::MoCoEncoderOptions("resnet34").in_channels(1).dim(16));
  try {
    mgd::models::load_moco_encoder(dir / "moco_v2.pth", *other);
    ADD_FAILURE() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("moco_v2.pth"), std::string::npos) << e.what();
  }
}

TEST(MoCoCheckpoint, MoCosOwnLegacyCheckpointLoadsAsAnEncoderAndComputesTheSame) {
  // As main_moco.py saves it under DistributedDataParallel: legacy (non-zip) torch.save,
  // "module.encoder_q." names, the optimizer's state beside.
  mgd::testing::TempDir dir("mgd-moco-official");
  torch::manual_seed(12);
  auto x = torch::randn({3, 1, 32, 32});
  mgd::serialize::save_file(dir / "in.pt", Value(dict({{"input", x}, {"dim", int64_t{16}}})));
  const std::string ckpt = dir / "moco_v2_200ep.pth.tar";
  const std::string cmd = std::string(MGD_PYTHON) + " " + MGD_SOURCE_DIR +
                          "/tests/oracle/moco_oracle.py official " + (dir / "in.pt") + " " + ckpt;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the PyTorch oracle failed: " << cmd;
  mgd::models::MoCoEncoder encoder(
      mgd::models::MoCoEncoderOptions("resnet18").in_channels(1).dim(16));
  mgd::models::load_moco_encoder(ckpt, *encoder);
  encoder->eval();
  torch::NoGradGuard no_grad;
  auto expected = mgd::serialize::load_file(ckpt + ".out").at("output").to_tensor();
  auto mine = encoder->extract(x).logits;
  EXPECT_TRUE(torch::allclose(mine, expected, 1e-4, 1e-4)) << (mine - expected).abs().max();
}

}  // namespace
