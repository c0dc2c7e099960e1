// zaya serve with a ZAYA1-VL model (the tiny golden model with a chat template, test::make_chat_fixture): images as
// OpenAI image_url parts give the same tokens as `zaya run --image` (greedy and sampled, one image or several),
// prompt reuse never mixes two images with equal ids, file:// needs --allow-local-files, and every bad image input
// is a 400 that names the problem.
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "zaya/server.h"

using nlohmann::json;
using zaya::server::Server;
using zaya::server::ServerOptions;

namespace {

std::string base64(const std::string& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += abc[(n >> 18) & 63];
    out += abc[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? abc[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? abc[n & 63] : '=';
  }
  return out;
}

std::string data_url(const std::string& bytes, const std::string& type = "image/png") {
  return "data:" + type + ";base64," + base64(bytes);
}

// A 56x84 RGB PNG whose pixels depend on `seed` (same size, so same image-token count, for every seed).
std::string png_image(int seed) {
  std::vector<uint8_t> rows(56 * 84 * 3);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t>((i * (7 + 2 * seed) + 31 * seed) % 251);
  const auto png = zaya::test::make_png(84, 56, 8, 2, rows);
  return std::string(png.begin(), png.end());
}

json image_part(const std::string& url) { return {{"type", "image_url"}, {"image_url", {{"url", url}}}}; }
json text_part(const std::string& text) { return {{"type", "text"}, {"text", text}}; }

json chat(json messages, int max_tokens, double temperature, uint64_t seed) {
  return {{"messages", std::move(messages)}, {"max_tokens", max_tokens}, {"temperature", temperature},
          {"seed", seed}, {"top_k", 0}, {"top_p", 1}, {"min_p", 0}};
}

json user_with_images(const std::vector<std::string>& urls, const std::string& text) {
  json content = json::array();
  for (const auto& u : urls) content.push_back(image_part(u));
  content.push_back(text_part(text));
  return {{"role", "user"}, {"content", content}};
}

struct Answer {
  int status = 0;
  std::string body;
  json j;
  std::string content() const { return j["choices"][0]["message"]["content"]; }
  int usage(const char* k) const { return j["usage"][k]; }
  int cached() const { return j["usage"]["prompt_tokens_details"]["cached_tokens"]; }
  std::string error_message() const { return j["error"]["message"]; }
  std::string error_code() const { return j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : ""; }
};

Answer post(const Server& s, const json& body, const std::string& path = "/v1/chat/completions") {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(120, 0);
  auto r = c.Post(path, body.dump(), "application/json");
  if (!r) throw std::runtime_error("POST " + path + ": " + httplib::to_string(r.error()));
  Answer a{r->status, r->body, json::parse(r->body, nullptr, false)};
  return a;
}

// The VL chat fixture, made once for the suite.
class ServerVl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new zaya::test::TempDir("server_vl");
    zaya::test::make_chat_fixture(dir_->str());
    png_a_ = png_image(1);
    png_b_ = png_image(2);
    write(*dir_ / "a.png", png_a_);
    write(*dir_ / "b.png", png_b_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  static std::string model() { return dir_->str(); }
  static std::string image_file() { return *dir_ / "image.png"; }
  static std::string image() { return zaya::test::read_file(image_file()); }

  static std::unique_ptr<Server> start(ServerOptions o, const std::string& model_dir = model()) {
    o.model_dir = model_dir;
    o.host = "127.0.0.1";
    o.port = 0;
    o.log_requests = getenv("ZAYA_LOG") != nullptr;
    auto s = std::make_unique<Server>(o);
    s->start();
    return s;
  }

  struct RunResult {
    std::string out;
    int generated = -1, prompt = -1;
  };
  // `zaya run --image …` with the server's sampling settings.
  static RunResult run(const std::vector<std::string>& images, const std::string& text, int n, double temp,
                       uint64_t seed, const std::string& flags = "") {
    std::string cmd = zaya::test::cli_path() + " run -m " + model() + flags;
    for (const auto& i : images) cmd += " --image " + i;
    cmd += " -p '" + text + "' -n " + std::to_string(n) + " --temp " + std::to_string(temp) +
           " --top-k 0 --top-p 1 --min-p 0 --seed " + std::to_string(seed);
    RunResult r;
    std::string err;
    EXPECT_EQ(zaya::test::run_command(cmd, &r.out, &err), 0) << cmd << "\n" << err;
    std::smatch m;
    if (std::regex_search(err, m, std::regex(R"(prompt (\d+) tokens .* generated (\d+) tokens)")))
      r.prompt = std::stoi(m[1]), r.generated = std::stoi(m[2]);
    EXPECT_GE(r.generated, 0) << err;
    return r;
  }

  static zaya::test::TempDir* dir_;
  static std::string png_a_, png_b_;
};
zaya::test::TempDir* ServerVl::dir_ = nullptr;
std::string ServerVl::png_a_, ServerVl::png_b_;

}  // namespace

// The acceptance check of ZAYA1-VL: an image sent as a data: URL gives the same tokens as `zaya run --image` with the
// same seed. A small batch and snapshot interval make sure the server does not split the image prompt.
TEST_F(ServerVl, DataUrlGivesTheTokensOfZayaRun) {
  ServerOptions o;
  o.batch_tokens = 8;
  o.snapshot_interval = 16;
  auto srv = start(o);
  const std::string url = data_url(image());
  for (const auto& [temp, seed] : std::vector<std::pair<double, uint64_t>>{{0.0, 1}, {0.9, 5}, {1.3, 77}}) {
    SCOPED_TRACE(testing::Message() << "temperature " << temp << " seed " << seed);
    const RunResult want = run({image_file()}, "describe it", 12, temp, seed);
    const Answer a = post(*srv, chat(json::array({user_with_images({url}, "describe it")}), 12, temp, seed));
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(a.content() + "\n", want.out);
    EXPECT_EQ(a.usage("completion_tokens"), want.generated);
    EXPECT_EQ(a.usage("prompt_tokens"), want.prompt);
    EXPECT_EQ(a.j["timings"]["images"], 1);
    EXPECT_GT(a.j["timings"]["vision_ms"].get<double>(), 0.0);
  }
  // Several images before the text (`zaya run --image A --image B`), the second one as the string form of image_url.
  const RunResult want = run({*dir_ / "a.png", *dir_ / "b.png"}, "compare them", 10, 0.8, 9);
  json msg = user_with_images({data_url(png_a_)}, "compare them");
  msg["content"].insert(msg["content"].begin() + 1, json{{"type", "image_url"}, {"image_url", data_url(png_b_)}});
  const Answer a = post(*srv, chat(json::array({msg}), 10, 0.8, 9));
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content() + "\n", want.out);
  EXPECT_EQ(a.usage("prompt_tokens"), want.prompt);
  EXPECT_EQ(a.j["timings"]["images"], 2);
  // The metrics count the images: 3 requests of one, one of two.
  httplib::Client c("127.0.0.1", srv->port());
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("zaya_images_total 5\n"), std::string::npos) << m->body;
}

// The mask policy reaches the model: a server with the causal mask answers as `zaya run --mask causal`, and not as
// the default policy does.
TEST_F(ServerVl, MaskOptionReachesTheModel) {
  ServerOptions o;
  o.mask = zaya::AttentionMask::Causal;
  auto srv = start(o);
  const json body = chat(json::array({user_with_images({data_url(image())}, "describe it")}), 16, 1.0, 4);
  const Answer a = post(*srv, body);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content() + "\n", run({image_file()}, "describe it", 16, 1.0, 4, " --mask causal").out);
  EXPECT_NE(a.content() + "\n", run({image_file()}, "describe it", 16, 1.0, 4).out);
  // The CLI takes both image options.
  std::string help;
  ASSERT_EQ(zaya::test::run_command(zaya::test::cli_path() + " serve --help", &help), 0);
  EXPECT_NE(help.find("--mask"), std::string::npos) << help;
  EXPECT_NE(help.find("--allow-local-files"), std::string::npos) << help;
  EXPECT_NE(zaya::test::run_command(zaya::test::cli_path() + " serve -m " + model() + " --mask nonsense"), 0);
}

// Two images of the same size have equal token ids; their cache keys differ, so neither reuses the other's state.
TEST_F(ServerVl, DifferentImagesNeverShareAPrefix) {
  ServerOptions o;
  o.parallel = 1;
  auto srv = start(o);
  auto ask = [&](const std::string& png) {
    return post(*srv, chat(json::array({user_with_images({data_url(png)}, "what is it")}), 8, 0.0, 3));
  };
  const Answer a = ask(png_a_);
  ASSERT_EQ(a.status, 200) << a.body;
  const Answer b = ask(png_b_);
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.usage("prompt_tokens"), b.usage("prompt_tokens"));
  EXPECT_EQ(b.cached(), 0) << b.body;
  EXPECT_EQ(b.content() + "\n", run({*dir_ / "b.png"}, "what is it", 8, 0.0, 3).out);
  // The same image again is answered from the snapshot at its prompt's end, with the same output.
  const Answer a2 = ask(png_a_);
  EXPECT_EQ(a2.cached(), a2.usage("prompt_tokens"));
  EXPECT_EQ(a2.content(), a.content());
  // A follow-up turn about image B (the image now in the history) resumes from B's prompt.
  json msgs = json::array({user_with_images({data_url(png_b_)}, "what is it"),
                           {{"role", "assistant"}, {"content", b.content()}},
                           {{"role", "user"}, {"content", "and its colour?"}}});
  const Answer b2 = post(*srv, chat(msgs, 6, 0.9, 3));
  ASSERT_EQ(b2.status, 200) << b2.body;
  EXPECT_GE(b2.cached(), b.usage("prompt_tokens")) << b2.body;
  EXPECT_LT(b2.cached(), b2.usage("prompt_tokens"));
  EXPECT_EQ(b2.j["timings"]["images"], 1);
  // A turn that adds an image attends from the start under the default mask (zyphra-fa2-prefix): it is computed
  // afresh rather than resumed. Both turns give what a fresh server gives.
  msgs.push_back({{"role", "assistant"}, {"content", b2.content()}});
  msgs.push_back(user_with_images({data_url(png_a_)}, "and this one?"));
  const Answer b3 = post(*srv, chat(msgs, 6, 0.9, 3));
  ASSERT_EQ(b3.status, 200) << b3.body;
  EXPECT_EQ(b3.cached(), 0) << b3.body;
  EXPECT_EQ(b3.j["timings"]["images"], 2);
  auto fresh = start(o);
  const Answer b3_fresh = post(*fresh, chat(msgs, 6, 0.9, 3));
  EXPECT_EQ(b3.content(), b3_fresh.content());
  msgs.erase(msgs.end() - 2, msgs.end());
  const Answer b2_fresh = post(*fresh, chat(msgs, 6, 0.9, 3));
  EXPECT_EQ(b2_fresh.cached(), 0) << b2_fresh.body;
  EXPECT_EQ(b2.content(), b2_fresh.content());
}

TEST_F(ServerVl, LocalFilesOnlyWhenAllowed) {
  const json body = chat(json::array({user_with_images({"file://" + image_file()}, "describe it")}), 6, 0.0, 1);
  {
    auto srv = start(ServerOptions{});
    const Answer r = post(*srv, body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.error_code(), "invalid_image_url");
    EXPECT_NE(r.error_message().find("--allow-local-files"), std::string::npos) << r.body;
  }
  ServerOptions o;
  o.allow_local_files = true;
  auto srv = start(o);
  const Answer f = post(*srv, body);
  ASSERT_EQ(f.status, 200) << f.body;
  const Answer d = post(*srv, chat(json::array({user_with_images({data_url(image())}, "describe it")}), 6, 0.0, 1));
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(f.content(), d.content());
  EXPECT_EQ(d.cached(), d.usage("prompt_tokens"));  // the same pixels: the same cache key
  // Percent-escapes and file://localhost/ are understood; relative or missing paths are not.
  const std::string spaced = *dir_ / "an image.png";
  write(spaced, image());
  const std::string escaped = "file://localhost" + std::regex_replace(spaced, std::regex(" "), "%20");
  EXPECT_EQ(post(*srv, chat(json::array({user_with_images({escaped}, "describe it")}), 6, 0.0, 1)).content(),
            d.content());
  for (const std::string url : {"file://image.png", "file:///nonexistent/x.png", "file:///tmp/%zz.png"}) {
    const Answer r = post(*srv, chat(json::array({user_with_images({url}, "x")}), 2, 0.0, 1));
    EXPECT_EQ(r.status, 400) << url << ": " << r.body;
    EXPECT_EQ(r.error_code(), "invalid_image_url") << r.body;
  }
}

TEST_F(ServerVl, BadImagesAreClearErrors) {
  ServerOptions o;
  o.max_body_bytes = 256 * 1024;
  auto srv = start(o);
  auto with_url = [&](const std::string& url) {
    return post(*srv, chat(json::array({user_with_images({url}, "x")}), 2, 0.0, 1));
  };
  auto expect = [&](const Answer& r, const std::string& code, const std::string& fragment) {
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.error_code(), code) << r.body;
    EXPECT_NE(r.body.find(fragment), std::string::npos) << r.body;
  };
  expect(with_url("https://example.com/cat.png"), "invalid_image_url", "remote image URLs are not fetched");
  expect(with_url("http://example.com/cat.png"), "invalid_image_url", "remote image URLs are not fetched");
  expect(with_url("ftp://x/y.png"), "invalid_image_url", "unsupported image URL");
  expect(with_url("data:image/png;base64,iVBORw0KGgo$"), "invalid_image_url", "not valid base64");
  expect(with_url("data:image/png;base64,iVBORw0KGgo"), "invalid_image_url", "not valid base64");  // unpadded
  expect(with_url("data:image/png;base64,iVBO Rw0K"), "invalid_image_url", "not valid base64");
  expect(with_url("data:image/png;base64,QR=="), "invalid_image_url", "not valid base64");  // non-zero pad bits
  expect(with_url("data:image/png;base64,"), "invalid_image_url", "no image data");
  expect(with_url("data:image/png,rawbytes"), "invalid_image_url", "base64");
  expect(with_url("data:image/gif;base64,R0lGODlh"), "invalid_image_url", "image/gif");
  expect(with_url("data:image/png;base64"), "invalid_image_url", "no ','");
  expect(with_url(data_url("hello, world")), "invalid_image", "not a PNG or JPEG");
  const std::string png = image();
  expect(with_url(data_url(png.substr(0, png.size() / 2))), "invalid_image", "PNG");
  // A header that declares a huge image is refused before any pixel is decoded.
  auto huge = zaya::test::make_png(1, 1, 8, 2, {0, 0, 0});
  for (int i = 0; i < 4; ++i) huge[16 + i] = huge[20 + i] = static_cast<uint8_t>(100000u >> (24 - 8 * i));
  const uint32_t crc = zaya::test::crc32(&huge[12], 17) ^ 0xffffffffu;
  for (int i = 0; i < 4; ++i) huge[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  expect(with_url(data_url(std::string(huge.begin(), huge.end()))), "invalid_image", "limit");
  // Malformed parts, the reserved marker in text next to an image, images on /tokenize, a body over the limit.
  json bad_part = chat(json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}}})}}}), 2, 0, 1);
  expect(post(*srv, bad_part), "invalid_type", "image_url");
  expect(post(*srv, chat(json::array({user_with_images({data_url(png)}, "a <|zaya:image|> b")}), 2, 0, 1)),
         "invalid_messages", "<|zaya:image|>");
  expect(post(*srv, json{{"messages", json::array({user_with_images({data_url(png)}, "x")})}}, "/tokenize"),
         "unsupported_content_type", "/tokenize");
  EXPECT_EQ(with_url(data_url(std::string(300 * 1024, 'x'))).status, 413);
  // The server is unharmed.
  EXPECT_EQ(with_url(data_url(png)).status, 200);
}

TEST_F(ServerVl, TextModelRefusesImages) {
  ServerOptions o;
  auto srv = start(o, zaya::test::require_path(zaya::test::data_dir() + "/golden/zaya1-text/tiny-a"));
  const Answer r = post(*srv, chat(json::array({user_with_images({data_url(image())}, "x")}), 2, 0.0, 1));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.error_code(), "unsupported_content_type");
  EXPECT_NE(r.error_message().find("this model takes no images"), std::string::npos) << r.body;
  EXPECT_EQ(r.j["error"]["param"], "messages[0].content[0].image_url");
}

TEST_F(ServerVl, StreamingWithAnImage) {
  auto srv = start(ServerOptions{});
  json body = chat(json::array({user_with_images({data_url(image())}, "describe it")}), 10, 0.7, 21);
  const Answer plain = post(*srv, body);
  ASSERT_EQ(plain.status, 200) << plain.body;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  httplib::Client c("127.0.0.1", srv->port());
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::string content;
  json timings, usage;
  bool done = false;
  for (size_t at = 0; at < r->body.size();) {
    size_t end = r->body.find("\n\n", at);
    if (end == std::string::npos) end = r->body.size();
    const std::string ev = r->body.substr(at, end - at);
    at = end + 2;
    ASSERT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    if (ev == "data: [DONE]") {
      done = true;
      continue;
    }
    const json j = json::parse(ev.substr(6));
    for (const auto& ch : j["choices"])
      if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
    if (j.contains("timings")) timings = j["timings"];
    if (j.contains("usage") && !j["usage"].is_null()) usage = j["usage"];
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(content, plain.content());
  EXPECT_EQ(timings["images"], 1);
  EXPECT_GT(timings["vision_ms"].get<double>(), 0.0);
  EXPECT_EQ(usage["prompt_tokens"], plain.usage("prompt_tokens"));
}

// A text request that shares batched passes with image prompts gets the tokens it gets alone (on another server, so
// that no cache hit hides the batching).
TEST_F(ServerVl, TextRequestsBesideImagePromptsAreUnchanged) {
  ServerOptions o;
  o.parallel = 3;
  const json text = chat(json::array({{{"role", "user"}, {"content", "tell me a story"}}}), 48, 0.9, 8);
  Answer alone, beside;
  {
    auto srv = start(o);
    alone = post(*srv, text);
  }
  ASSERT_EQ(alone.status, 200) << alone.body;
  EXPECT_FALSE(alone.j["timings"].contains("vision_ms"));
  auto srv = start(o);
  std::vector<std::thread> images;
  for (int i = 0; i < 2; ++i)
    images.emplace_back([&, i] {
      post(*srv, chat(json::array({user_with_images({data_url(i ? png_a_ : png_b_)}, "hi")}), 48, 0.9, 1));
    });
  std::thread t([&] { beside = post(*srv, text); });
  for (auto& th : images) th.join();
  t.join();
  ASSERT_EQ(beside.status, 200) << beside.body;
  EXPECT_EQ(beside.content(), alone.content());
  EXPECT_EQ(beside.cached(), 0);
}
