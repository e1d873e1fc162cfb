// One MGD step from an installed mgd: a WRN-16-2 teacher and a ResNet-20 student from the
// zoo, a matching from one tracked batch, the distillation loss, a backward pass and an SGD
// update. Prints "ok VERSION LOSS" and exits 0 when the loss is finite and the weights moved.
#include <cmath>
#include <cstdio>

#include <mgd/mgd.h>  // every public header: none may need one that is not installed

int main() {
  torch::manual_seed(0);
  const auto options = mgd::models::ModelOptions().classes(10).in_channels(1);
  auto teacher = mgd::models::make_model("wrn_16_2", options);
  auto student = mgd::models::make_model("resnet20", options);
  teacher->eval();
  mgd::Distiller distiller(teacher, student, mgd::DistillerOptions().reducer("amp"));
  const auto images = torch::randn({8, 1, 28, 28});
  const auto labels = torch::randint(0, 10, {8}, torch::kLong);
  distiller->track(images);
  distiller->update_matching();
  distiller->train();
  mgd::training::SGD sgd(distiller->trainable_parameters(), mgd::training::SGDOptions(0.1));
  const auto before = student->parameters().front().clone();
  const auto out = distiller->forward(images);
  const auto loss = torch::cross_entropy_loss(out.logits, labels) + out.loss / 8.0 / 1e4;
  sgd.zero_grad();
  loss.backward();
  sgd.step();
  const double value = loss.item<double>();
  const bool moved = !torch::equal(before, student->parameters().front());
  std::printf("ok %s %.6f\n", mgd::version().c_str(), value);
  return std::isfinite(value) && moved ? 0 : 1;
}
