// zaya verify: the report as a table or JSON.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "zaya/verify.h"

namespace zaya {
using json = nlohmann::json;

namespace {

const char* status_name(VerifyCheck::Status s) {
  return s == VerifyCheck::Pass ? "PASS" : s == VerifyCheck::Fail ? "FAIL" : "skip";
}

}  // namespace

std::string verify_report_table(const VerifyReport& r) {
  std::ostringstream os;
  os << "bundle: " << r.dir << "\n";
  if (!r.kind.empty()) os << "kind:   " << r.kind << "\n";
  os << "keys:   " << r.keys << ", " << r.tensor_bytes << " tensor bytes, " << r.file_bytes << " file bytes\n\n";
  size_t w = 5;
  for (const auto& c : r.checks) w = std::max(w, c.name.size());
  os << "check" << std::string(w - 5 + 2, ' ') << "status  detail\n";
  size_t failed = 0;
  for (const auto& c : r.checks) {
    os << c.name << std::string(w - c.name.size() + 2, ' ') << status_name(c.status) << "    " << c.detail << "\n";
    const size_t show = 20;
    for (size_t i = 0; i < c.problems.size() && i < show; ++i) os << "    - " << c.problems[i] << "\n";
    if (c.problems.size() > show) os << "    - … and " << c.problems.size() - show << " more\n";
    if (c.status == VerifyCheck::Fail) ++failed;
  }
  os << "\nresult: " << (r.ok() ? "PASS" : "FAIL") << " (" << r.checks.size() << " checks, " << failed << " failed)\n";
  return os.str();
}

std::string verify_report_json(const VerifyReport& r) {
  json j;
  j["dir"] = r.dir;
  j["kind"] = r.kind;
  j["ok"] = r.ok();
  j["keys"] = r.keys;
  j["tensor_bytes"] = r.tensor_bytes;
  j["file_bytes"] = r.file_bytes;
  j["checks"] = json::array();
  for (const auto& c : r.checks) {
    json x;
    x["name"] = c.name;
    x["status"] = c.status == VerifyCheck::Pass ? "pass" : c.status == VerifyCheck::Fail ? "fail" : "skip";
    x["detail"] = c.detail;
    x["problems"] = c.problems;
    j["checks"].push_back(x);
  }
  return j.dump(2);
}

}  // namespace zaya
