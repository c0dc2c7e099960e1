// zaya logits: logits of every position as a float32 .npy [T, V]; --prefill K runs K tokens in one call, then
// one decode step per remaining token. With --image (ZAYA1-VL) the ids are the expanded prompt: the image token
// once per feature row of each image, which is checked.
#include <memory>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/error.h"
#include "zaya/npy.h"
#include "zaya/vision.h"

namespace zaya::cli {

Runner add_logits(CLI::App& app) {
  struct Opts {
    ModelOptions model;
    std::string ids, out;
    int prefill = -1;
    std::vector<std::string> images;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("logits", "write the logits of every position to a .npy file");
  o->model.add_to(sub, /*exact_by_default=*/true);
  sub->add_option("--ids", o->ids, "comma-separated token ids")->required();
  sub->add_option("--prefill", o->prefill, "prefill the first K tokens in one call, then decode one token at a time")
      ->check(CLI::PositiveNumber);
  sub->add_option("-o,--output", o->out, "output .npy path")->required();
  sub->add_option("--image", o->images, "ZAYA1-VL: an image (PNG/JPEG) for the image tokens in --ids, in order; repeatable");
  return [o]() {
    const auto ids = parse_ids(o->ids);
    if (o->prefill > static_cast<int>(ids.size()))
      throw Error(cat("--prefill ", o->prefill, " is larger than the ", ids.size(), " ids given"));
    auto model = load_model(o->model);
    DecodeState st = model->new_state();
    const size_t K = o->prefill > 0 ? static_cast<size_t>(o->prefill) : ids.size();
    Model::BatchItem first(std::span<const int32_t>(ids).first(K), &st, LogitsMode::All);
    MultimodalPrompt mm;
    if (!o->images.empty()) {
      const auto vision = VisionEncoder::load(o->model.dir, model_load_options(o->model));
      mm = attach_images(model->config(), ids, vision->encode_files(o->images));
      for (size_t t = K; t < ids.size(); ++t)
        if (mm.flags[t]) throw Error(cat("--prefill ", K, ": every image token must be in the prefill (token ", t, " is one)"));
      first.embeddings = std::span(mm.embeddings).first(K * model->config().hidden);
      first.flags = std::span(mm.flags).first(K);
    }
    model->forward_batch(std::span(&first, 1));
    std::vector<float> logits = std::move(first.logits);
    for (size_t t = K; t < ids.size(); ++t) {
      auto row = model->forward(std::span(ids).subspan(t, 1), st, LogitsMode::All);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    write_npy_f32(o->out, logits.data(), {static_cast<int64_t>(ids.size()), model->config().vocab});
    return 0;
  };
}

}  // namespace zaya::cli
